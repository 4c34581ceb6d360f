package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrBadRedisURL is wrapped by Connect for a URL it cannot read.
var ErrBadRedisURL = errors.New("bad Redis URL")

// Connect opens and pings a client for rawURL:
//
//	redis://[user:pass@]host:port[/db], rediss://…, unix:///path.sock   one server
//	redis+cluster://[user:pass@]host:port,host:port[/]                 Redis Cluster seeds
//	rediss+cluster://…                                                 the same over TLS
//	redis+sentinel://[user:pass@]host:port,host:port/<master>[/<db>]  Sentinel
//
// A cluster client makes NewRedis use the sharded key layout (see Keys).
func Connect(ctx context.Context, rawURL string) (redis.UniversalClient, error) {
	var rdb redis.UniversalClient
	switch {
	case strings.HasPrefix(rawURL, "redis+cluster://"), strings.HasPrefix(rawURL, "rediss+cluster://"):
		u, hosts, err := splitHosts(rawURL)
		if err != nil {
			return nil, err
		}
		first := strings.Replace(u.Scheme, "+cluster", "", 1) + "://" + userinfo(u) + hosts[0]
		for _, h := range hosts[1:] {
			first += map[bool]string{true: "&", false: "?"}[strings.Contains(first, "?")] + "addr=" + h
		}
		if u.RawQuery != "" {
			first += map[bool]string{true: "&", false: "?"}[strings.Contains(first, "?")] + u.RawQuery
		}
		opt, err := redis.ParseClusterURL(first)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadRedisURL, err)
		}
		rdb = redis.NewClusterClient(opt)
	case strings.HasPrefix(rawURL, "redis+sentinel://"):
		u, hosts, err := splitHosts(rawURL)
		if err != nil {
			return nil, err
		}
		parts := strings.Split(strings.Trim(u.Path, "/"), "/")
		if parts[0] == "" {
			return nil, fmt.Errorf("%w: redis+sentinel:// needs the master's name as its path: redis+sentinel://host:26379/mymaster", ErrBadRedisURL)
		}
		opt := &redis.FailoverOptions{MasterName: parts[0], SentinelAddrs: hosts}
		if len(parts) > 1 {
			if opt.DB, err = strconv.Atoi(parts[1]); err != nil {
				return nil, fmt.Errorf("%w: db %q is not a number", ErrBadRedisURL, parts[1])
			}
		}
		if u.User != nil {
			opt.Username = u.User.Username()
			opt.Password, _ = u.User.Password()
		}
		rdb = redis.NewFailoverClient(opt)
	default:
		opt, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadRedisURL, err)
		}
		rdb = redis.NewClient(opt)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("redis %s unreachable: %w", Describe(rdb), err)
	}
	return rdb, nil
}

// splitHosts reads scheme://[userinfo@]h1:p1,h2:p2/path?query.
func splitHosts(raw string) (*url.URL, []string, error) {
	scheme, rest, _ := strings.Cut(raw, "://")
	hostEnd := strings.IndexAny(rest, "/?")
	if hostEnd < 0 {
		hostEnd = len(rest)
	}
	hostPart := rest[:hostEnd]
	user := ""
	if i := strings.LastIndexByte(hostPart, '@'); i >= 0 {
		user, hostPart = hostPart[:i+1], hostPart[i+1:]
	}
	hosts := strings.Split(hostPart, ",")
	for _, h := range hosts {
		if h == "" || !strings.Contains(h, ":") {
			return nil, nil, fmt.Errorf("%w: %q: want host:port,host:port", ErrBadRedisURL, hostPart)
		}
	}
	u, err := url.Parse(scheme + "://" + user + hosts[0] + rest[hostEnd:])
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadRedisURL, err)
	}
	return u, hosts, nil
}

func userinfo(u *url.URL) string {
	if u.User == nil {
		return ""
	}
	return u.User.String() + "@"
}

// Describe names rdb's server(s) for logs and errors, without passwords.
func Describe(rdb redis.UniversalClient) string {
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		return "cluster " + strings.Join(c.Options().Addrs, ",")
	case *redis.Client:
		return c.Options().Addr
	}
	return "redis"
}
