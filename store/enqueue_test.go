package store_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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
	// Once sent and lost, once sent again: never a third time. The 50
	// notices of one shard make one batch.
	if calls := evalCalls(t, direct); calls != 2 {
		t.Errorf("Redis ran %d enqueue scripts, want 2 (the lost batch and our one re-send)", calls)
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

// TestEnqueueBatchesAnswerPerNotice: one call of many notices is stored in
// several scripts; each notice still gets its own answer and is stored as
// a call of one would store it, near or far, in a bucket or under a key of
// its own, and an id met twice in a call, in one script or in two, is
// stored once.
func TestEnqueueBatchesAnswerPerNotice(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	r := store.NewRedis(rdb, "", nil)
	ctx := context.Background()
	stamp := time.Now().Truncate(time.Millisecond)
	const count = 200
	dups := map[int]string{50: "e-010", 150: "e-020"} // in the first script; in a later one
	var ns []notifier.Notice
	for i := range count {
		id, sched := fmt.Sprintf("e-%03d", i), "10"
		if i%2 == 1 {
			sched = "86400" // beyond the far horizon: kept in the table
		}
		if d, ok := dups[i]; ok {
			id = d
		}
		n := newNotice(id, stamp, sched)
		if i == 100 {
			n.Body = []byte(strings.Repeat("x", 5000)) // too large for a bucket
		}
		ns = append(ns, n)
	}
	errs, err := r.Enqueue(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	near, far := 0, 0
	for i, e := range errs {
		if _, dup := dups[i]; dup {
			if !errors.Is(e, notifier.ErrDuplicate) {
				t.Errorf("notice %d (%s again): %v, want ErrDuplicate", i, ns[i].ID, e)
			}
			continue
		}
		if e != nil {
			t.Fatalf("notice %d: %v", i, e)
		}
		if i%2 == 1 {
			far++
		} else {
			near++
		}
	}
	if c, err := r.PendingCount(ctx, nil); err != nil || c != int64(near+far) {
		t.Errorf("PendingCount = %d, %v; want %d", c, err, near+far)
	}
	if c := rdb.ZCard(ctx, r.Keys().Due()).Val(); c != int64(near) {
		t.Errorf("due index holds %d, want the %d near attempts", c, near)
	}
	if f := rdb.HGet(ctx, r.Keys().RecordsShard(0), "f").Val(); f != strconv.Itoa(far) {
		t.Errorf("table counts %s far notices, want %d", f, far)
	}
	for i, n := range ns {
		if _, dup := dups[i]; dup {
			continue
		}
		p, err := r.Pending(ctx, n.ID)
		if err != nil {
			t.Fatalf("Pending(%s): %v", n.ID, err)
		}
		due, _ := n.Schedule.Due(n.Stamp, 1)
		if p.N != 1 || !p.Due.Equal(due) || string(p.Notice.Body) != string(n.Body) {
			t.Errorf("Pending(%s) = attempt %d due %v, %d-byte body; want 1, %v, %d bytes", n.ID, p.N, p.Due, len(p.Notice.Body), due, len(n.Body))
		}
		key := r.Keys().Trigger(notifier.Trigger{ID: n.ID, Stamp: n.Stamp, N: 1})
		if pttl := rdb.PTTL(ctx, key).Val(); pttl <= 0 || pttl > time.Until(due)+time.Second {
			t.Errorf("trigger %s: PTTL %v, want up to %v", key, pttl, time.Until(due))
		}
	}
}

// idsInBuckets returns ids (prefix, then a number) in the given buckets of
// a payload table of two buckets, in order.
func idsInBuckets(prefix string, buckets ...int) []string {
	var ids []string
	for i := 0; len(ids) < len(buckets); i++ {
		id := fmt.Sprintf("%s%d", prefix, i)
		if store.BucketOf(id, 1) == buckets[len(ids)] {
			ids = append(ids, id)
		}
	}
	return ids
}

// TestEnqueueBatchFailingPartWay: a command failing inside a batch (here a
// key of the wrong type where the second notice's bucket belongs, in a
// table of two buckets) ends the batch there, but what the notices before
// it stored is complete, and each notice's answer says what happened to it.
func TestEnqueueBatchFailingPartWay(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	r := store.NewRedis(rdb, "", nil)
	ctx := context.Background()
	stamp := time.Now().Truncate(time.Millisecond)
	ids := idsInBuckets("p-", 0, 1, 0)
	ns := []notifier.Notice{newNotice(ids[0], stamp, "10"), newNotice(ids[1], stamp, "10"), newNotice(ids[2], stamp, "10")}
	table := r.Keys().RecordsShard(0)
	rdb.HSet(ctx, table, "i", 1, "p", 0, "n", 0)
	rdb.Set(ctx, table+":1", "not a bucket", 0)
	errs, err := r.Enqueue(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	if errs[0] != nil || !errors.Is(errs[1], notifier.ErrUnconfirmed) || !errors.Is(errs[2], notifier.ErrNotStored) {
		t.Fatalf("errs = %v; want stored, unconfirmed, not stored", errs)
	}
	if !strings.Contains(errs[1].Error(), "WRONGTYPE") {
		t.Errorf("the failed notice's error %q does not say why", errs[1])
	}
	// The first is stored whole: indexed, counted, and known to a re-send.
	if p, err := r.Pending(ctx, ids[0]); err != nil || p.N != 1 {
		t.Errorf("Pending(%s) = %+v, %v", ids[0], p, err)
	}
	if c := rdb.ZCard(ctx, r.Keys().Due()).Val(); c != 1 {
		t.Errorf("due index holds %d, want 1", c)
	}
	if n := rdb.HGet(ctx, r.Keys().RecordsShard(0), "n").Val(); n != "1" {
		t.Errorf("table counts %s notices, want 1", n)
	}
	if _, err := r.Pending(ctx, ids[2]); err == nil {
		t.Errorf("%s, after the failure, was stored", ids[2])
	}
	errs, err = r.Enqueue(ctx, []notifier.Notice{ns[0], ns[2]})
	if err != nil || !errors.Is(errs[0], notifier.ErrDuplicate) || errs[1] != nil {
		t.Errorf("enqueue %s and %s again = %v, %v; want duplicate, stored", ids[0], ids[2], errs, err)
	}
}
