package store_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/store"
	"github.com/notifier/notifier/store/redistest"
)

// An attempt due beyond the far horizon waits in the payload table, not
// the due index: it is still counted, listed and shown, promoted into the
// index before it is due (its trigger key still alive), claimed there once
// Redis expires it, and its next far attempt waits in the table again
// until a cancel removes every trace of it.
func TestFarAttempts(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	r := store.NewRedis(rdb, "", nil)
	r.FarHorizon = 2 * time.Second
	ctx := context.Background()
	keys := r.Keys()
	table := keys.RecordsShard(0)
	farCount := func() int {
		n, _ := strconv.Atoi(rdb.HGet(ctx, table, "f").Val())
		return n
	}
	stamp := time.Now().Truncate(time.Millisecond)
	n := newNotice("far-1", stamp, "4,600")
	other := newNotice("far-2", stamp, "4")
	if errs, err := r.Enqueue(ctx, []notifier.Notice{n, other}); err != nil || errs[0] != nil || errs[1] != nil {
		t.Fatalf("Enqueue: %v %v", errs, err)
	}
	first := notifier.Trigger{ID: n.ID, Stamp: n.Stamp, N: 1}
	due := stamp.Add(4 * time.Second)
	if c := rdb.ZCard(ctx, keys.Due()).Val(); c != 0 || farCount() != 2 {
		t.Fatalf("due index holds %d, table %d far; want 0 and 2", c, farCount())
	}
	if rdb.Exists(ctx, keys.Trigger(first)).Val() != 1 {
		t.Fatal("a far attempt has no trigger key")
	}
	if err := r.Cancel(ctx, other.ID); err != nil {
		t.Fatalf("Cancel far-2: %v", err)
	}
	if c, err := r.PendingCount(ctx, nil); err != nil || c != 1 || farCount() != 1 {
		t.Fatalf("PendingCount = %d, %v (far %d) after cancelling one of two; want 1", c, err, farCount())
	}
	p, err := r.PendingHeader(ctx, n.ID)
	if err != nil || p.N != 1 || !p.Due.Equal(due) || p.Notice.URL != n.URL {
		t.Fatalf("PendingHeader = %+v, %v; want attempt 1 due %v", p, err, due)
	}
	var listed []notifier.PendingNotice
	if err := r.EachPending(ctx, func(p notifier.PendingNotice) error { listed = append(listed, p); return nil }); err != nil ||
		len(listed) != 1 || listed[0].Notice.ID != n.ID || listed[0].N != 1 || !listed[0].Due.Equal(due) {
		t.Fatalf("EachPending = %+v, %v", listed, err)
	}

	// The sweep and the waker promote it through Overdue, as this loop
	// does, before it is due.
	member := keys.Member(first)
	deadline := time.Now().Add(30 * time.Second)
	for rdb.ZScore(ctx, keys.Due(), member).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatal("the far attempt was never promoted")
		}
		if _, err := r.Overdue(ctx, time.Time{}, time.Now(), 10); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !time.Now().Before(due) {
		t.Fatal("promoted only once it was due")
	}
	if rdb.PTTL(ctx, keys.Trigger(first)).Val() <= 0 {
		t.Fatal("promoted, but its trigger key is gone before it was due")
	}
	if s := rdb.ZScore(ctx, keys.Due(), member).Val(); int64(s) != due.UnixMilli() || farCount() != 0 {
		t.Fatalf("promoted with score %v (far %d), want %d", s, farCount(), due.UnixMilli())
	}

	// Redis expires the trigger when due; the claim finds it in the index.
	for rdb.Exists(ctx, keys.Trigger(first)).Val() == 1 {
		if time.Now().After(deadline) {
			t.Fatal("the trigger never expired")
		}
		time.Sleep(20 * time.Millisecond)
	}
	res, jobs, err := r.Claim(ctx, []notifier.Trigger{first}, time.Minute)
	if err != nil || res[0] != notifier.Claimed || string(jobs[0].Notice.Body) != string(n.Body) {
		t.Fatalf("Claim = %v, %+v, %v", res, jobs, err)
	}
	next := stamp.Add(600 * time.Second)
	if kept, err := r.Reschedule(ctx, jobs[0], 2, next); err != nil || !kept {
		t.Fatalf("Reschedule = %v, %v", kept, err)
	}
	if c := rdb.ZCard(ctx, keys.Due()).Val(); c != 0 || farCount() != 1 {
		t.Fatalf("after arming a far attempt 2: due index holds %d, table %d far; want 0 and 1", c, farCount())
	}
	if p, err := r.Pending(ctx, n.ID); err != nil || p.N != 2 || !p.Due.Equal(next) || string(p.Notice.Body) != string(n.Body) {
		t.Fatalf("Pending = %+v, %v; want attempt 2 due %v", p, err, next)
	}
	if err := r.Cancel(ctx, n.ID); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if c, err := r.PendingCount(ctx, nil); err != nil || c != 0 || farCount() != 0 {
		t.Fatalf("PendingCount = %d, %v (far %d) after cancelling; want 0", c, err, farCount())
	}
	second := notifier.Trigger{ID: n.ID, Stamp: n.Stamp, N: 2}
	if rdb.Exists(ctx, keys.Trigger(second), table+":t").Val() != 0 {
		t.Fatal("a trigger key or the bucket times outlived the cancel")
	}
}
