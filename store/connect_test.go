package store_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/store"
	"github.com/redis/go-redis/v9"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startProc runs redis-server with args until the test ends and waits
// until port answers PING.
func startProc(t *testing.T, port int, args ...string) {
	t.Helper()
	cmd := exec.Command("redis-server", args...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("redis-server (install it with `make deps`): %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); c.Ping(context.Background()).Err() != nil; {
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %d never answered", port)
		}
		time.Sleep(10 * time.Millisecond) // no readiness signal but the port
	}
}

// TestConnectThroughSentinel: a redis+sentinel:// URL finds the master
// through a real Sentinel; notices stored through it fire their expired
// events.
func TestConnectThroughSentinel(t *testing.T) {
	dir := t.TempDir()
	master, sentinel := freePort(t), freePort(t)
	startProc(t, master, "--port", fmt.Sprint(master), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor mymaster 127.0.0.1 %d 1\n", sentinel, dir, master)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	startProc(t, sentinel, conf, "--sentinel")
	ctx := context.Background()
	rdb, err := store.Connect(ctx, fmt.Sprintf("redis+sentinel://127.0.0.1:%d/mymaster", sentinel))
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	q := store.NewRedis(rdb, "", nil)
	if err := q.CheckEvents(ctx, true); err != nil {
		t.Fatal(err)
	}
	fired := make(chan notifier.Trigger, 1)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan struct{}, 1)
	go func() {
		_ = q.Listen(lctx, notifier.Handlers{
			Ready: func() { ready <- struct{}{} },
			Fire: func(tr notifier.Trigger) {
				select {
				case fired <- tr:
				default:
				}
			},
			Wake: func() {},
		})
	}()
	<-ready
	errs, err := q.Enqueue(ctx, []notifier.Notice{{ID: "s1", URL: "http://p.example/x", Schedule: backoff.Schedule{50 * time.Millisecond},
		Stamp: time.Now().Truncate(time.Millisecond)}})
	if err != nil || errs[0] != nil {
		t.Fatal(err, errs)
	}
	select {
	case tr := <-fired:
		if tr.ID != "s1" {
			t.Errorf("fired %+v", tr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no expired event through the Sentinel-found master")
	}
}

// TestConnectRefusesBadURLs: unreadable URLs are ErrBadRedisURL (bad
// input), not connection failures.
func TestConnectRefusesBadURLs(t *testing.T) {
	for _, u := range []string{"redis+cluster://", "redis+cluster://nohostport", "redis+sentinel://127.0.0.1:1", "ftp://x", "redis+sentinel://127.0.0.1:1/m/notadb"} {
		if _, err := store.Connect(context.Background(), u); !errors.Is(err, store.ErrBadRedisURL) {
			t.Errorf("Connect(%q) = %v, want ErrBadRedisURL", u, err)
		}
	}
}

// TestConnectErrorsHideThePassword: a Redis URL that cannot be read is
// refused with an error that says what is wrong but never contains the
// password, whatever the scheme and wherever parsing fails.
func TestConnectErrorsHideThePassword(t *testing.T) {
	const secret = "S3cretPass"
	tests := []struct {
		name, url, want string
	}{
		{"RedisBadPort", "redis://:S3cretPass@127.0.0.1:notaport/0", `invalid port ":notaport"`},
		{"RedisUserBadPort", "redis://ops:S3cretPass@127.0.0.1:1x/0", `invalid port ":1x"`},
		{"RedisControlCharacter", "redis://:S3cretPass@127.0.0.1:1/0\x7f", "invalid control character"},
		{"RedisBadDB", "redis://:S3cretPass@127.0.0.1:1/notadb", `invalid database number: "notadb"`},
		{"RedisPasswordOnlyNoColon", "redis://S3cretPass@127.0.0.1:1x", `invalid port ":1x"`},
		{"RedisBadEscapeInPassword", "redis://:S3cret%zzPass@127.0.0.1:1/0", "password"},
		{"RedisSlashInPassword", "redis://:S3cret/Pass@127.0.0.1:1/0", "password"},
		{"RedissBadIPv6", "rediss://ops:S3cretPass@[::1:1/0", "missing ']'"},
		{"RedissBadOption", "rediss://ops:S3cretPass@127.0.0.1:1/0?dial_timeout=soon", "dial_timeout"},
		{"ClusterBadPort", "redis+cluster://:S3cretPass@127.0.0.1:1x,127.0.0.1:2", `invalid port ":1x"`},
		{"ClusterBadOption", "rediss+cluster://ops:S3cretPass@127.0.0.1:1,127.0.0.1:2?read_timeout=soon", "read_timeout"},
		{"ClusterNoPort", "redis+cluster://:S3cretPass@127.0.0.1", "want host:port"},
		{"ClusterBadEscapeInPassword", "redis+cluster://:S3cret%zzPass@127.0.0.1:1,127.0.0.1:2", "password"},
		{"SentinelBadPort", "redis+sentinel://:S3cretPass@127.0.0.1:2637x/mymaster", `invalid port ":2637x"`},
		{"SentinelNoMaster", "redis+sentinel://:S3cretPass@127.0.0.1:1", "master's name"},
		{"SentinelBadEscapeInPassword", "redis+sentinel://:S3cret%zzPass@127.0.0.1:1/mymaster", "password"},
		{"UnixControlCharacter", "unix://:S3cretPass@/tmp/redis\x00.sock", "invalid control character"},
		{"UnixBadDB", "unix://:S3cretPass@/tmp/redis.sock?db=x", "invalid database number"},
		{"UnixBadEscapeInPassword", "unix://:S3cret%zzPass@/tmp/redis.sock", "password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rdb, err := store.Connect(context.Background(), tt.url)
			if err == nil {
				rdb.Close()
				t.Fatalf("Connect(%q) = nil error, want ErrBadRedisURL", tt.url)
			}
			if !errors.Is(err, store.ErrBadRedisURL) {
				t.Errorf("Connect: %v, want ErrBadRedisURL", err)
			}
			for _, leak := range []string{secret, "S3cret", "Pass"} {
				if strings.Contains(err.Error(), leak) {
					t.Fatalf("Connect: %q contains %q from the password", err, leak)
				}
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Connect: %q, want it to say %q", err, tt.want)
			}
		})
	}
}

// TestConnectAcceptsHostPort: a bare host:port, as redis-cli users write it,
// is redis://host:port: nothing listens on port 1, so Connect fails to reach
// it rather than refusing the URL.
func TestConnectAcceptsHostPort(t *testing.T) {
	for raw, addr := range map[string]string{"127.0.0.1:1": "127.0.0.1:1", "localhost:1": "localhost:1", "[::1]:1": "[::1]:1"} {
		opt, err := store.ParseURL(raw)
		if err != nil || opt.Addr != addr {
			t.Errorf("ParseURL(%q) = %v, %v; want Addr %s", raw, opt, err, addr)
		}
	}
	_, err := store.Connect(context.Background(), "127.0.0.1:1")
	if err == nil || errors.Is(err, store.ErrBadRedisURL) || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("Connect(127.0.0.1:1) = %v, want unreachable", err)
	}
	if _, err := store.Connect(context.Background(), "127.0.0.1:notaport"); !errors.Is(err, store.ErrBadRedisURL) {
		t.Errorf("Connect(127.0.0.1:notaport) = %v, want ErrBadRedisURL", err)
	}
}
