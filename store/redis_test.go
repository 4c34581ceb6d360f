package store_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/store"
	"github.com/notifier/notifier/store/redistest"
	"github.com/redis/go-redis/v9"
)

func newNotice(id string, stamp time.Time, sched string) notifier.Notice {
	s, err := backoff.Parse(sched)
	if err != nil {
		panic(err)
	}
	return notifier.Notice{ID: id, URL: "http://partner.example/notify?token=secret", Body: []byte("{\"a\":1}\nline2"),
		Header: http.Header{"X-Shop": {"42"}}, Schedule: s, Stamp: stamp.Truncate(time.Millisecond)}
}

func TestEnqueueStoresTriggerPayloadAndIndex(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	r := store.NewRedis(rdb, "", nil)
	ctx := context.Background()
	stamp := time.Now().Truncate(time.Millisecond)
	n := newNotice("order_1", stamp, "10,20")
	errs, err := r.Enqueue(ctx, []notifier.Notice{n, newNotice("bad id", stamp, "0")})
	if err != nil {
		t.Fatal(err)
	}
	if errs[0] != nil || !errors.Is(errs[1], notifier.ErrInvalidNotice) {
		t.Fatalf("errs = %v, want [nil, ErrInvalidNotice]", errs)
	}
	key := r.Keys().Trigger(notifier.Trigger{ID: "order_1", Stamp: stamp, N: 1})
	pttl, err := rdb.PTTL(ctx, key).Result()
	if err != nil || pttl < 9*time.Second || pttl > 10*time.Second {
		t.Fatalf("PTTL %s = %v, %v; want about 10s", key, pttl, err)
	}
	score, err := rdb.ZScore(ctx, r.Keys().Due(), r.Keys().Member(notifier.Trigger{ID: "order_1", Stamp: stamp, N: 1})).Result()
	if err != nil || int64(score) != stamp.Add(10*time.Second).UnixMilli() {
		t.Fatalf("due score = %v, %v; want %d", score, err, stamp.Add(10*time.Second).UnixMilli())
	}
	p, err := r.Pending(ctx, "order_1")
	if err != nil {
		t.Fatal(err)
	}
	if p.N != 1 || !p.Due.Equal(stamp.Add(10*time.Second)) || string(p.Notice.Body) != string(n.Body) ||
		p.Notice.URL != n.URL || p.Notice.Header.Get("X-Shop") != "42" || p.Notice.Schedule.String() != n.Schedule.String() {
		t.Fatalf("Pending = %+v", p)
	}

	t.Run("DuplicateIsRefusedAndKeepsTheFirst", func(t *testing.T) {
		dup := newNotice("order_1", stamp.Add(time.Second), "0")
		errs, err := r.Enqueue(ctx, []notifier.Notice{dup})
		if err != nil || !errors.Is(errs[0], notifier.ErrDuplicate) {
			t.Fatalf("Enqueue duplicate = %v, %v; want ErrDuplicate", errs, err)
		}
		if p, _ := r.Pending(ctx, "order_1"); !p.Notice.Stamp.Equal(stamp) {
			t.Fatalf("duplicate replaced the pending notice: stamp %v", p.Notice.Stamp)
		}
	})
	t.Run("ZeroOffsetClampsTTLToOneMillisecond", func(t *testing.T) {
		past := time.Now().Add(-time.Hour)
		errs, err := r.Enqueue(ctx, []notifier.Notice{newNotice("late", past, "0")})
		if err != nil || errs[0] != nil {
			t.Fatalf("enqueue overdue notice: %v %v", errs, err)
		}
		ts, err := r.Overdue(ctx, time.Time{}, time.Now(), 10)
		if err != nil || len(ts) != 1 || ts[0].ID != "late" {
			t.Fatalf("Overdue = %v, %v; want [late]", ts, err)
		}
	})
}

func TestClaimIsExclusive(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	a, b := store.NewRedis(rdb, "", nil), store.NewRedis(rdb, "", nil)
	ctx := context.Background()
	stamp := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	if _, err := a.Enqueue(ctx, []notifier.Notice{newNotice("x", stamp, "0,1h,2h")}); err != nil {
		t.Fatal(err)
	}
	t1 := notifier.Trigger{ID: "x", Stamp: stamp, N: 1}
	res, jobs, err := a.Claim(ctx, []notifier.Trigger{t1, t1}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if res[0] != notifier.Claimed || res[1] != notifier.Busy || len(jobs) != 1 {
		t.Fatalf("claim twice = %v (%d jobs), want [Claimed Busy]", res, len(jobs))
	}
	if res, _, _ := b.Claim(ctx, []notifier.Trigger{t1}, time.Minute); res[0] != notifier.Busy {
		t.Fatalf("second instance claim = %v, want Busy", res)
	}
	if ts, _ := a.Overdue(ctx, time.Time{}, time.Now(), 10); len(ts) != 0 {
		t.Fatalf("a claimed attempt is listed as overdue: %v", ts)
	}
	t2 := notifier.Trigger{ID: "x", Stamp: stamp, N: 2}
	t.Run("NotYetDueIsNotClaimed", func(t *testing.T) {
		// A late duplicate of an old trigger must not take an attempt
		// re-armed for later.
		if kept, err := a.Reschedule(ctx, jobs[0], 2, time.Now().Add(time.Hour)); err != nil || !kept {
			t.Fatalf("Reschedule = %v, %v", kept, err)
		}
		if n, _ := rdb.Exists(ctx, a.Keys().Trigger(t2)).Result(); n != 1 {
			t.Fatal("no trigger key for attempt 2")
		}
		if res, _, _ := b.Claim(ctx, []notifier.Trigger{t1, t2}, time.Minute); res[0] != notifier.Stale || res[1] != notifier.Stale {
			t.Fatalf("claims of a finished and of a future attempt = %v, want [Stale Stale]", res)
		}
		// Make attempt 2 due now for what follows.
		rdb.ZAdd(ctx, a.Keys().Due(), redis.Z{Score: float64(time.Now().UnixMilli()), Member: a.Keys().Member(t2)})
	})

	t.Run("ExpiredLeaseIsTakenOver", func(t *testing.T) {
		res, jobs, err := a.Claim(ctx, []notifier.Trigger{t2}, 50*time.Millisecond)
		if err != nil || res[0] != notifier.Claimed {
			t.Fatalf("claim = %v, %v", res, err)
		}
		if n, _ := rdb.Exists(ctx, a.Keys().Trigger(t2)).Result(); n != 0 {
			t.Fatal("claim left a trigger key that could fire later")
		}
		deadline := time.Now().Add(5 * time.Second)
		var res2 []notifier.ClaimResult
		var jobs2 []notifier.Job
		for time.Now().Before(deadline) {
			if res2, jobs2, err = b.Claim(ctx, []notifier.Trigger{t2}, time.Minute); err != nil || res2[0] != notifier.Busy {
				break
			}
			time.Sleep(10 * time.Millisecond) // waiting on Redis's own clock: PX has no event to wait for
		}
		if res2[0] != notifier.Claimed {
			t.Fatalf("claim after lease ran out = %v, want Claimed", res2)
		}
		if kept, err := a.Finish(ctx, jobs[0]); err != nil || kept {
			t.Fatalf("Finish with a lost claim = %v, %v; want false", kept, err)
		}
		if kept, err := b.Finish(ctx, jobs2[0]); err != nil || !kept {
			t.Fatalf("Finish by the new holder = %v, %v; want true", kept, err)
		}
		if p := a.PayloadOf(ctx, "x"); p != "" {
			t.Fatal("Finish (a give-up) left the payload; only deliveries leave a tombstone")
		}
		if _, err := a.Pending(ctx, "x"); !errors.Is(err, notifier.ErrNotFound) {
			t.Fatalf("Pending after finish: %v, want ErrNotFound", err)
		}
	})
}

func TestClaimOrphanAndCorrupt(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	r := store.NewRedis(rdb, "", nil)
	ctx := context.Background()
	stamp := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	if _, err := r.Enqueue(ctx, []notifier.Notice{newNotice("gone", stamp, "0"), newNotice("junk", stamp, "0")}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"gone", "junk"} {
		if err := r.RemovePayload(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	rdb.Set(ctx, r.Keys().Payload("junk"), "not a payload", 0)
	ts := []notifier.Trigger{{ID: "gone", Stamp: stamp, N: 1}, {ID: "junk", Stamp: stamp, N: 1}, {ID: "never", Stamp: stamp, N: 1}}
	res, jobs, err := r.Claim(ctx, ts, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	want := []notifier.ClaimResult{notifier.Orphan, notifier.Corrupt, notifier.Stale}
	for i := range want {
		if res[i] != want[i] {
			t.Fatalf("results = %v, want %v", res, want)
		}
	}
	if len(jobs) != 0 {
		t.Fatalf("jobs = %v", jobs)
	}
	if n, _ := rdb.ZCard(ctx, r.Keys().Due()).Result(); n != 0 {
		t.Fatalf("due index keeps %d dropped entries", n)
	}
}

func TestReleaseRearmsTheTrigger(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	r := store.NewRedis(rdb, "", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stamp := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	if _, err := r.Enqueue(ctx, []notifier.Notice{newNotice("rel", stamp, "0")}); err != nil {
		t.Fatal(err)
	}
	tr := notifier.Trigger{ID: "rel", Stamp: stamp, N: 1}
	_, jobs, err := r.Claim(ctx, []notifier.Trigger{tr}, time.Minute)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("claim: %v %v", jobs, err)
	}
	fired := make(chan notifier.Trigger, 1)
	ready := make(chan struct{}, 1)
	go r.Listen(ctx, handlers(ready, fired))
	<-ready
	if err := r.Release(ctx, jobs[0]); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-fired:
		if got != tr {
			t.Fatalf("fired %+v, want %+v", got, tr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("released attempt never fired")
	}
	if res, _, _ := r.Claim(ctx, []notifier.Trigger{tr}, time.Minute); res[0] != notifier.Claimed {
		t.Fatalf("claim after release = %v", res)
	}
}

func TestListenParsesTriggersAndCountsForeignKeys(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	r := store.NewRedis(rdb, "", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fired := make(chan notifier.Trigger, 10)
	ready := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() { done <- r.Listen(ctx, handlers(ready, fired)) }()
	<-ready
	foreign := []string{"session:1", "noticeId_bad", "noticeId_x_1_0"}
	for _, k := range foreign {
		rdb.Set(ctx, k, "", time.Millisecond)
	}
	// Touching expired keys expires them (and publishes their events) now,
	// so they are sure to come before the trigger set afterwards.
	for _, k := range foreign {
		for rdb.Exists(ctx, k).Val() == 1 {
			time.Sleep(time.Millisecond) // Redis's clock must pass the expiry
		}
	}
	rdb.Set(ctx, "noticeId_a_b_1700000000000_2", "", time.Millisecond)
	select {
	case got := <-fired:
		if got.ID != "a_b" || got.N != 2 || got.Stamp.UnixMilli() != 1700000000000 {
			t.Fatalf("fired %+v", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event for the trigger key")
	}
	// Events arrive in order, so the three foreign keys set before the
	// trigger have been counted by now.
	if n := r.ForeignKeys(); n != 3 {
		t.Fatalf("ForeignKeys = %d, want 3", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Listen returned %v after cancel", err)
	}
}

func TestNudgeFiresDueKeysAtOnce(t *testing.T) {
	// Many pending keys make Redis's own expiry cycle slow to find due
	// ones; a nudge must not depend on it.
	srv := redistest.Start(t, "hz 1")
	rdb := srv.Client()
	r := store.NewRedis(rdb, "", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fired := make(chan notifier.Trigger, 10)
	ready := make(chan struct{}, 1)
	go r.Listen(ctx, handlers(ready, fired))
	<-ready
	stamp := time.Now().Truncate(time.Millisecond)
	if _, err := r.Enqueue(ctx, []notifier.Notice{newNotice("soon", stamp, "0.05")}); err != nil {
		t.Fatal(err)
	}
	tr := notifier.Trigger{ID: "soon", Stamp: stamp, N: 1}
	time.Sleep(time.Until(stamp.Add(52 * time.Millisecond))) // until just past due
	alive, err := r.Nudge(ctx, []notifier.Trigger{tr})
	if err != nil || alive[0] {
		t.Fatalf("Nudge = %v, %v; want the key expired by the touch", alive, err)
	}
	select {
	case got := <-fired:
		if got != tr {
			t.Fatalf("fired %+v", got)
		}
	case <-time.After(500 * time.Millisecond): // hz 1 alone would take up to a second
		t.Fatal("nudged key did not fire promptly")
	}
}

func TestCheckEvents(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	r := store.NewRedis(rdb, "", nil)
	ctx := context.Background()
	rdb.ConfigSet(ctx, "notify-keyspace-events", "")
	if err := r.CheckEvents(ctx, false); !errors.Is(err, store.ErrEventsOff) {
		t.Fatalf("CheckEvents(no set) = %v, want ErrEventsOff", err)
	}
	if err := r.CheckEvents(ctx, true); err != nil {
		t.Fatalf("CheckEvents(set) = %v", err)
	}
	if v := rdb.ConfigGet(ctx, "notify-keyspace-events").Val()["notify-keyspace-events"]; v != "xE" {
		t.Fatalf("flags after set = %q, want xE", v)
	}
}

func TestScriptsSurviveScriptFlush(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	r := store.NewRedis(rdb, "", nil)
	ctx := context.Background()
	rdb.ScriptFlush(ctx)
	errs, err := r.Enqueue(ctx, []notifier.Notice{newNotice("f", time.Now(), "1h")})
	if err != nil || errs[0] != nil {
		t.Fatalf("enqueue after SCRIPT FLUSH: %v %v", errs, err)
	}
	if _, err := r.Pending(ctx, "f"); err != nil {
		t.Fatal(err)
	}
}

func handlers(ready chan struct{}, fired chan notifier.Trigger) notifier.Handlers {
	return notifier.Handlers{
		Ready: func() { ready <- struct{}{} },
		Fire:  func(t notifier.Trigger) { fired <- t },
		Wake:  func() {},
	}
}

func TestWakeHintWhenArmedDue(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	r := store.NewRedis(rdb, "", nil)
	r.FarHorizon = 2 * time.Hour // the notice due in an hour is in the due index
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready, woken := make(chan struct{}, 1), make(chan struct{}, 10)
	go r.Listen(ctx, notifier.Handlers{Ready: func() { ready <- struct{}{} }, Fire: func(notifier.Trigger) {}, Wake: func() { woken <- struct{}{} }})
	<-ready
	if _, err := r.Enqueue(ctx, []notifier.Notice{newNotice("later", time.Now(), "1h")}); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, r.Keys().WakeFlag()).Val(); n != 0 {
		t.Fatal("a notice due in an hour sent a wake hint")
	}
	if _, err := r.Enqueue(ctx, []notifier.Notice{newNotice("now", time.Now(), "0")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-woken:
	case <-time.After(5 * time.Second):
		t.Fatal("no wake hint for a notice due now")
	}
	next, ok, err := r.NextDue(ctx, time.Now())
	if err != nil || !ok || next.Before(time.Now().Add(59*time.Minute)) {
		t.Fatalf("NextDue = %v, %v, %v; want about an hour from now", next, ok, err)
	}
}

// enqueueMany stores count notices <prefix>000... on sched from stamp, and
// returns them with their first attempts' triggers.
func enqueueMany(t *testing.T, r *store.Redis, prefix string, count int, stamp time.Time, sched string) ([]notifier.Notice, []notifier.Trigger) {
	t.Helper()
	ns := make([]notifier.Notice, count)
	ts := make([]notifier.Trigger, count)
	for i := range ns {
		ns[i] = newNotice(fmt.Sprintf("%s%03d", prefix, i), stamp, sched)
		ts[i] = notifier.Trigger{ID: ns[i].ID, Stamp: ns[i].Stamp, N: 1}
	}
	if errs, err := r.Enqueue(context.Background(), ns); err != nil || errors.Join(errs...) != nil {
		t.Fatalf("Enqueue: %v %v", errs, err)
	}
	return ns, ts
}

// TestCompleteBatches: one Complete call of many attempts ends each as a
// call of one would: a delivered notice is removed and remembered, a
// retry armed near goes to the due index, one armed far stays in the
// table, and a claim since lost is refused, while the table's counts stay
// true through the merges the removals cause.
func TestCompleteBatches(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	r := store.NewRedis(rdb, "", nil)
	ctx := context.Background()
	stamp := time.Now().Add(-time.Second).Truncate(time.Millisecond)
	const count = 150
	_, ts := enqueueMany(t, r, "c-", count, stamp, "0,10,3600")
	results, jobs, err := r.Claim(ctx, ts, time.Minute)
	if err != nil || len(jobs) != count {
		t.Fatalf("Claim: %d jobs, %v (%v)", len(jobs), err, results)
	}
	cs := make([]notifier.Completion, count)
	for i, j := range jobs {
		switch i % 3 {
		case 0:
			cs[i] = notifier.Completion{Job: j, Ended: notifier.Delivered}
		case 1:
			cs[i] = notifier.Completion{Job: j, Next: 2, Due: stamp.Add(10 * time.Second)}
		case 2:
			cs[i] = notifier.Completion{Job: j, Next: 2, Due: stamp.Add(time.Hour)}
		}
	}
	lost := 4 // its lease was taken over: a near retry that must not be armed
	rdb.Set(ctx, r.Keys().Lease(cs[lost].Job.Notice.ID), "someone-else", time.Minute)
	kept, err := r.Complete(ctx, cs)
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if v, ttl := rdb.Get(ctx, r.Keys().Lease(cs[lost].Job.Notice.ID)).Val(), rdb.PTTL(ctx, r.Keys().Lease(cs[lost].Job.Notice.ID)).Val(); v != "someone-else" || ttl <= 0 {
		t.Errorf("the other worker's lease after a lost completion: %q, TTL %v; want it kept, with a TTL", v, ttl)
	}
	delivered, near, far := 0, 0, 0
	for i, c := range cs {
		want := i != lost
		if kept[i] != want {
			t.Errorf("attempt %d: kept %v, want %v", i, kept[i], want)
		}
		if !want {
			continue
		}
		switch {
		case c.Next == 0:
			delivered++
		case c.Due.Sub(stamp) < time.Minute:
			near++
		default:
			far++
		}
	}
	meta := rdb.HGetAll(ctx, r.Keys().RecordsShard(0)).Val()
	if meta["n"] != strconv.Itoa(count-delivered) || meta["f"] != strconv.Itoa(far) {
		t.Errorf("table meta %v, want n=%d f=%d", meta, count-delivered, far)
	}
	if c, err := r.PendingCount(ctx, nil); err != nil || c != int64(count-delivered) {
		t.Errorf("PendingCount = %d, %v; want %d", c, err, count-delivered)
	}
	if c, err := r.RememberedDelivered(ctx); err != nil || c != int64(delivered) {
		t.Errorf("RememberedDelivered = %d, %v; want %d", c, err, delivered)
	}
	// The near retries, and the lost claim's attempt still held by its lease.
	if c := rdb.ZCard(ctx, r.Keys().Due()).Val(); c != int64(near+1) {
		t.Errorf("due index holds %d, want %d", c, near+1)
	}
	for i, c := range cs {
		if !kept[i] {
			continue
		}
		id := c.Job.Notice.ID
		if c.Next == 0 {
			if _, err := r.Pending(ctx, id); err == nil {
				t.Errorf("delivered %s is still pending", id)
			}
			errs, err := r.Enqueue(ctx, []notifier.Notice{newNotice(id, time.Now(), "0")})
			if err != nil || !errors.Is(errs[0], notifier.ErrDuplicate) {
				t.Errorf("enqueue delivered %s again: %v %v, want ErrDuplicate", id, errs, err)
			}
			continue
		}
		p, err := r.Pending(ctx, id)
		if err != nil || p.N != 2 || !p.Due.Equal(c.Due) {
			t.Errorf("Pending(%s) = attempt %d due %v, %v; want 2 due %v", id, p.N, p.Due, err, c.Due)
		}
		key := r.Keys().Trigger(notifier.Trigger{ID: id, Stamp: stamp, N: 2})
		if pttl := rdb.PTTL(ctx, key).Val(); pttl <= 0 || pttl > time.Until(c.Due)+time.Second {
			t.Errorf("next trigger %s: PTTL %v, want up to %v", key, pttl, time.Until(c.Due))
		}
	}
}

// TestClaimBatches: one Claim call of many triggers answers for each as a
// claim of one would, and an attempt named twice is claimed once (the
// scores are read once, at the start of the call).
func TestClaimBatches(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	r := store.NewRedis(rdb, "", nil)
	ctx := context.Background()
	stamp := time.Now().Add(-time.Second).Truncate(time.Millisecond)
	const count = 150
	ns, ts := enqueueMany(t, r, "k-", count, stamp, "0")
	later, _ := enqueueMany(t, r, "k-later-", 1, time.Now(), "3600")
	want := make([]notifier.ClaimResult, count)
	for i := range want {
		want[i] = notifier.Claimed
	}
	// orphan and twice are in the last script call (items 128 on), with their
	// second mentions.
	const orphan, busy, twice = 140, 20, 130
	if err := r.RemovePayload(ctx, ts[orphan].ID); err != nil {
		t.Fatal(err)
	}
	want[orphan] = notifier.Orphan
	rdb.Set(ctx, r.Keys().Lease(ts[busy].ID), "someone-else", time.Minute)
	want[busy] = notifier.Busy
	// Named twice: claimed, then busy; the orphan, named twice, is dropped
	// the first time and gone (stale) the second.
	ts = append(ts, ts[twice], notifier.Trigger{ID: later[0].ID, Stamp: later[0].Stamp, N: 1}, ts[orphan])
	want = append(want, notifier.Busy, notifier.Stale, notifier.Stale)

	results, jobs, err := r.Claim(ctx, ts, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(results, want) {
		for i := range results {
			if results[i] != want[i] {
				t.Errorf("trigger %d (%s): %v, want %v", i, ts[i].ID, results[i], want[i])
			}
		}
	}
	if len(jobs) != count-2 {
		t.Errorf("%d jobs, want %d", len(jobs), count-2)
	}
	leaseEnd := float64(time.Now().Add(50 * time.Second).UnixMilli())
	for _, j := range jobs {
		tr := notifier.Trigger{ID: j.Notice.ID, Stamp: j.Notice.Stamp, N: 1}
		if string(j.Notice.Body) != string(ns[0].Body) || !j.Due.Equal(stamp) {
			t.Errorf("job %s: body %q due %v, want the notice's, due %v", j.Notice.ID, j.Notice.Body, j.Due, stamp)
		}
		if s := rdb.ZScore(ctx, r.Keys().Due(), r.Keys().Member(tr)).Val(); s < leaseEnd {
			t.Errorf("claimed %s has score %v, want the lease's end", tr.ID, s)
		}
		if rdb.Exists(ctx, r.Keys().Trigger(tr)).Val() != 0 {
			t.Errorf("claimed %s kept its trigger key", tr.ID)
		}
		if rdb.Get(ctx, r.Keys().Lease(tr.ID)).Val() != j.Token {
			t.Errorf("claimed %s: lease is not its token", tr.ID)
		}
	}
	if rdb.ZScore(ctx, r.Keys().Due(), r.Keys().Member(ts[orphan])).Err() != redis.Nil {
		t.Errorf("the orphan's index entry was kept")
	}
}
