package store_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/notifier/notifier/store"
)

// TestServerWaitsWhileItLoads: a redis-server still loading its data when
// the start timeout runs out is waited for (it answers LOADING), not killed:
// after a crash with many notices pending, loading takes longer than any
// fixed timeout on a small machine, and serve would never come back.
func TestServerWaitsWhileItLoads(t *testing.T) {
	dir, err := os.MkdirTemp("", "load")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctx := context.Background()
	srv, err := store.StartServer(ctx, store.ServerConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: srv.Socket})
	pipe := rdb.Pipeline()
	const keys = 2000
	for i := range keys {
		pipe.Set(ctx, fmt.Sprintf("k%d", i), "v", 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	// Into the AOF's base file, which Redis loads key by key.
	if err := rdb.BgRewriteAOF(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		info := rdb.Info(ctx, "persistence").Val()
		if !containsLine(info, "aof_rewrite_in_progress:1") && !containsLine(info, "aof_rewrite_scheduled:1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("AOF rewrite still running after 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	rdb.Close()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}

	// key-load-delay (µs per key) makes loading take about 2 s, ten times
	// the start timeout; a small loading-process-events-interval-bytes
	// makes the server answer (LOADING) during it as often as a large file
	// does.
	start := time.Now()
	srv, err = store.StartServer(ctx, store.ServerConfig{Dir: dir, StartTimeout: 200 * time.Millisecond,
		Extra: []string{"key-load-delay 1000", "loading-process-events-interval-bytes 1024"}})
	if err != nil {
		t.Fatalf("start while loading: %v", err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	took := time.Since(start)
	rdb = redis.NewClient(&redis.Options{Network: "unix", Addr: srv.Socket})
	defer rdb.Close()
	if n := rdb.DBSize(ctx).Val(); n != keys {
		t.Errorf("%d keys after loading, want %d", n, keys)
	}
	if took < 200*time.Millisecond {
		t.Errorf("loading took %v: shorter than the start timeout, so the test proves nothing", took)
	}
	t.Logf("loaded %d keys in %v with a 200ms start timeout", keys, took)
}

func containsLine(info, line string) bool {
	for _, l := range strings.Split(info, "\n") {
		if strings.TrimRight(l, "\r") == line {
			return true
		}
	}
	return false
}
