package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
)

// TestCompleteFailingPartWay: a command failing inside a complete batch
// (here the dedup node where the second delivered id would be remembered
// is a key of another type) stops it there, but what the attempts before
// it completed stays complete: the first notice is gone and its lease
// freed (the leases are deleted after the loop, for the attempts it
// completed); the third, never reached, keeps its lease and its place.
func TestCompleteFailingPartWay(t *testing.T) {
	r, rdb := newInternalRedis(t, "no")
	ctx := context.Background()
	ids, routeStart := idsRoutedApart("cf-")
	stamp := time.Now().Add(-time.Second).Truncate(time.Millisecond)
	var ns []notifier.Notice
	var ts []notifier.Trigger
	for _, id := range ids {
		ns = append(ns, notifier.Notice{ID: id, URL: "https://p.example/n", Schedule: backoff.Schedule{0}, Stamp: stamp})
		ts = append(ts, notifier.Trigger{ID: id, Stamp: stamp, N: 1})
	}
	if errs, err := r.Enqueue(ctx, ns); err != nil || errs[0] != nil || errs[1] != nil || errs[2] != nil {
		t.Fatalf("Enqueue: %v, %v", errs, err)
	}
	_, jobs, err := r.Claim(ctx, ts, time.Minute)
	if err != nil || len(jobs) != 3 {
		t.Fatalf("Claim: %d jobs, %v", len(jobs), err)
	}
	// The generation the script remembers delivered ids in (see
	// dedup_gen), and the next one, should the test cross into it.
	gen := dedupGeneration(r.dedupWindow()).Milliseconds()
	for g := time.Now().UnixMilli() / gen; g <= time.Now().UnixMilli()/gen+1; g++ {
		node := fmt.Sprintf("%s%d.%d:%c", r.keys.DedupNodes(ids[1]), gen, g, routeStart(ids[1]))
		rdb.Set(ctx, node, "not a set", 0)
	}
	cs := make([]notifier.Completion, len(jobs))
	for i, j := range jobs {
		cs[i] = notifier.Completion{Job: j, Ended: notifier.Delivered}
	}
	kept, err := r.Complete(ctx, cs)
	var partial *notifier.BatchErrors
	if !errors.As(err, &partial) || partial.Errs[0] != nil || partial.Errs[1] == nil || partial.Errs[2] == nil || !kept[0] {
		t.Fatalf("Complete = %v, %v; want the first completed, the second and third failed", kept, err)
	}
	if n := rdb.Exists(ctx, r.keys.Lease(ids[0])).Val(); n != 0 {
		t.Errorf("the completed notice's lease is still there")
	}
	if v := rdb.Get(ctx, r.keys.Lease(ids[2])).Val(); v != jobs[2].Token {
		t.Errorf("the notice the batch never reached has lease %q, want its claim's %q", v, jobs[2].Token)
	}
	if _, err := r.Pending(ctx, ids[0]); err == nil {
		t.Errorf("the completed notice %s is still pending", ids[0])
	}
	if _, err := r.Pending(ctx, ids[2]); err != nil {
		t.Errorf("the notice the batch never reached: %v, want it pending", err)
	}
}
