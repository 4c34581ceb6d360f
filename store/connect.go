package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
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
//	host:port                                                         redis://host:port (the redis-cli habit)
//
// A cluster client makes NewRedis use the sharded key layout (see Keys).
// No error contains the password: a URL that cannot be read is reported as
// if its password were "xxxxx".
func Connect(ctx context.Context, rawURL string) (redis.UniversalClient, error) {
	return ConnectPool(ctx, rawURL, 0)
}

// ConnectPool is Connect with at most poolSize connections per server (0:
// the URL's pool_size, else go-redis's default of 10 per CPU). Serve gives its admin reads (API and
// console) a small pool of their own, so they never take the
// connections delivery needs.
func ConnectPool(ctx context.Context, rawURL string, poolSize int) (redis.UniversalClient, error) {
	open, err := parse(rawURL)
	if err != nil {
		return nil, redactParseError(rawURL, err, func(u string) error { _, err := parse(u); return err })
	}
	rdb := open(poolSize)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("redis %s unreachable: %w", Describe(rdb), err)
	}
	return rdb, nil
}

// ParseURL is redis.ParseURL (redis://, rediss://, unix://) whose errors
// wrap ErrBadRedisURL and, like Connect's, never contain the password.
func ParseURL(rawURL string) (*redis.Options, error) {
	rawURL = withScheme(rawURL)
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, redactParseError(rawURL, fmt.Errorf("%w: %v", ErrBadRedisURL, err), func(u string) error {
			if _, err := redis.ParseURL(u); err != nil {
				return fmt.Errorf("%w: %v", ErrBadRedisURL, err)
			}
			return nil
		})
	}
	return opt, nil
}

// parse reads rawURL (see Connect) into a func that makes its client with
// a pool of poolSize connections per server (0: the default, or the URL's
// pool_size).
func parse(rawURL string) (func(poolSize int) redis.UniversalClient, error) {
	rawURL = withScheme(rawURL)
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
		return func(poolSize int) redis.UniversalClient {
			if poolSize > 0 {
				opt.PoolSize = poolSize
			}
			return redis.NewClusterClient(opt)
		}, nil
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
		return func(poolSize int) redis.UniversalClient {
			if poolSize > 0 {
				opt.PoolSize = poolSize
			}
			return redis.NewFailoverClient(opt)
		}, nil
	default:
		opt, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadRedisURL, err)
		}
		return func(poolSize int) redis.UniversalClient {
			if poolSize > 0 {
				opt.PoolSize = poolSize
			}
			return redis.NewClient(opt)
		}, nil
	}
}

// withScheme reads a bare host:port, as redis-cli -h/-p users write it, as
// redis://host:port; anything else is returned unchanged.
func withScheme(raw string) string {
	if strings.Contains(raw, "://") {
		return raw
	}
	host, port, err := net.SplitHostPort(raw)
	if err != nil || host == "" || strings.ContainsAny(host, "/@?#") {
		return raw
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return raw
	}
	return "redis://" + raw
}

// redactParseError returns err, what parsing rawURL came to, unless rawURL
// carries user info: then it returns what parsing rawURL with the password
// replaced by "xxxxx" comes to (reparse), which cannot contain the password
// however the parser quotes its input. If that parses, the password itself
// was what could not be read, and the error says so.
func redactParseError(rawURL string, err error, reparse func(string) error) error {
	redacted, ok := redactUserinfo(rawURL)
	if !ok {
		return err
	}
	if err := reparse(redacted); err != nil {
		return err
	}
	return fmt.Errorf("%w: the password in the user info cannot be read: percent-encode %%, /, ?, #, @ and : in it", ErrBadRedisURL)
}

// redactUserinfo replaces the password in rawURL's user info with "xxxxx",
// or all of the user info if it has no ':' (it may be a password alone);
// ok is false if rawURL has none. The user info is taken to end at the last
// '@', not at the first '/', '?' or '#' as a URL parser would, so that a
// password holding those characters unescaped is redacted whole; an '@' in
// a path or query is redacted too, which only costs a less precise error.
func redactUserinfo(rawURL string) (string, bool) {
	scheme, rest, found := strings.Cut(rawURL, "://")
	at := strings.LastIndexByte(rest, '@')
	if !found || at < 0 {
		return rawURL, false
	}
	user := "xxxxx"
	if name, _, hasPassword := strings.Cut(rest[:at], ":"); hasPassword {
		user = name + ":xxxxx"
	}
	return scheme + "://" + user + rest[at:], true
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

// ErrNoServe is returned by ConnectTo when no URL is given and no serve runs
// with the data dir.
var ErrNoServe = errors.New("no Redis")

// ConnectTo is ConnectPool for a command line's --redis and --data-dir:
// rawURL, or if it is empty the embedded redis-server of the serve using
// dataDir (an error wrapping ErrNoServe if there is none).
func ConnectTo(ctx context.Context, rawURL, dataDir string, poolSize int) (redis.UniversalClient, error) {
	if rawURL == "" {
		dir, err := filepath.Abs(dataDir)
		if err != nil {
			return nil, fmt.Errorf("%w: data dir: %v", ErrBadRedisURL, err)
		}
		sock := SocketPath(dir)
		if _, err := os.Stat(sock); err != nil {
			return nil, fmt.Errorf("%w: no serve is running with data dir %s (start `notifier serve`, or pass --redis URL)", ErrNoServe, dataDir)
		}
		rawURL = "unix://" + sock
	}
	return ConnectPool(ctx, rawURL, poolSize)
}
