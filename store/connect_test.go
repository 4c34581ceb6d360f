package store_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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
