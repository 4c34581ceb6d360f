package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/store"
	"github.com/notifier/notifier/store/redistest"
	"github.com/redis/go-redis/v9"
)

// lossyStore is a store whose client reaches Redis through a proxy that can
// drop a reply after Redis ran the request, with short timeouts.
func lossyStore(t *testing.T) (*store.Redis, *redistest.Proxy, *redis.Client) {
	t.Helper()
	srv := redistest.Start(t)
	px := redistest.NewProxy(t, srv.Socket)
	opt, err := redis.ParseURL(px.URL())
	if err != nil {
		t.Fatal(err)
	}
	opt.ReadTimeout, opt.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return store.NewRedis(c, "", nil), px, srv.Client()
}

// evalCalls counts the scripts Redis ran (EVALSHA and EVAL).
func evalCalls(t *testing.T, rdb *redis.Client) int {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, line := range strings.Split(info, "\n") {
		for _, cmd := range []string{"cmdstat_evalsha:calls=", "cmdstat_eval:calls="} {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), cmd); ok {
				var n int
				fmt.Sscanf(rest, "%d", &n)
				total += n
			}
		}
	}
	return total
}

// TestEnqueueWhoseReplyIsLostIsStoredOnce: Redis stores a pipeline of new
// notices but the reply never reaches the client (the connection times out).
// Sending the scripts again must not report the new ids as duplicates of
// themselves: the enqueue recognises its own payloads, and every notice is
// reported stored, once.
func TestEnqueueWhoseReplyIsLostIsStoredOnce(t *testing.T) {
	q, px, direct := lossyStore(t)
	ctx := context.Background()
	// Redis has the script cached, so the lost pipeline runs it.
	if errs, err := q.Enqueue(ctx, []notifier.Notice{newNotice("warm-up", time.Now(), "1h")}); err != nil || errs[0] != nil {
		t.Fatalf("Enqueue: %v %v", errs, err)
	}
	if err := direct.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	stamp := time.Now()
	var ns []notifier.Notice
	for i := range 50 {
		ns = append(ns, newNotice(fmt.Sprintf("lost-%02d", i), stamp, "1h"))
	}
	px.DropRepliesAfter("evalsha")
	errs, err := q.Enqueue(ctx, ns)
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	for i, e := range errs {
		if e != nil {
			t.Errorf("notice %s: %v, want stored", ns[i].ID, e)
		}
	}
	if n, err := q.PendingCount(ctx, nil); err != nil || n != int64(len(ns))+1 {
		t.Errorf("pending: %d, %v; want %d", n, err, len(ns)+1)
	}
	// Once sent and lost, once sent again: never a third time.
	if calls := evalCalls(t, direct); calls != 2*len(ns) {
		t.Errorf("Redis ran %d enqueue scripts, want %d (the lost pipeline and our one re-send)", calls, 2*len(ns))
	}

	t.Run("ADifferentPayloadIsStillADuplicate", func(t *testing.T) {
		errs, err := q.Enqueue(ctx, []notifier.Notice{newNotice("lost-00", stamp.Add(time.Second), "1h")})
		if err != nil || !errors.Is(errs[0], notifier.ErrDuplicate) {
			t.Fatalf("Enqueue of a pending id = %v, %v; want ErrDuplicate", errs, err)
		}
	})
}

// TestScriptsAreNeverResentBlindly: a claim whose reply is lost is reported
// as failed, not run again by the client (a second run would find its own
// lease and call the attempt busy): Redis ran it exactly once.
func TestScriptsAreNeverResentBlindly(t *testing.T) {
	q, px, direct := lossyStore(t)
	ctx := context.Background()
	n := newNotice("claimed", time.Now().Add(-time.Second), "0")
	if errs, err := q.Enqueue(ctx, []notifier.Notice{n}); err != nil || errs[0] != nil {
		t.Fatalf("Enqueue: %v %v", errs, err)
	}
	if err := direct.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	px.DropRepliesAfter("evalsha")
	_, _, err := q.Claim(ctx, []notifier.Trigger{{ID: n.ID, Stamp: n.Stamp, N: 1}}, time.Minute)
	if err == nil {
		t.Fatal("Claim whose reply was lost returned no error")
	}
	if calls := evalCalls(t, direct); calls != 1 {
		t.Errorf("Redis ran the claim script %d times, want 1", calls)
	}
}
