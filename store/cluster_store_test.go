package store_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/store"
	"github.com/notifier/notifier/store/redistest"
)

// TestClusterShardsOfLiveMastersAnswerWhileOneIsDown: with one master
// killed and not replaced, on a cluster that keeps serving the slots it
// still covers (cluster-require-full-coverage no), the waker's and the
// sweep's queries still return the other masters' shards instead of
// failing as a whole. (With full coverage required, the default, the whole
// cluster refuses commands until a replica takes over.)
func TestClusterShardsOfLiveMastersAnswerWhileOneIsDown(t *testing.T) {
	c := redistest.StartCluster(t, 3, 0, "cluster-require-full-coverage no")
	ctx := context.Background()
	q := store.NewRedis(c.Client(), "", nil)
	past := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	var ns []notifier.Notice
	for i := range 60 {
		ns = append(ns, notifier.Notice{ID: "d" + strconv.Itoa(i), URL: "http://p.example/x", Schedule: backoff.Schedule{time.Second}, Stamp: past})
	}
	if errs, err := q.Enqueue(ctx, ns); err != nil {
		t.Fatal(err)
	} else {
		for _, e := range errs {
			if e != nil {
				t.Fatal(e)
			}
		}
	}
	all, err := q.Overdue(ctx, time.Time{}, time.Now(), 1000)
	if err != nil || len(all) != 60 {
		t.Fatalf("Overdue = %d, %v; want 60", len(all), err)
	}
	victim, err := c.MasterOf(ctx, q.Keys().DueShard(0))
	if err != nil {
		t.Fatal(err)
	}
	c.Kill(victim) // no replica: its shards stay down
	some, err := q.Overdue(ctx, time.Time{}, time.Now(), 1000)
	if err != nil {
		t.Fatalf("Overdue with one master down: %v", err)
	}
	if len(some) == 0 || len(some) >= 60 {
		t.Errorf("Overdue with one of three masters down = %d attempts, want some but not all of 60", len(some))
	}
	if _, _, err := q.NextDue(ctx, past.Add(-time.Hour)); err != nil {
		t.Errorf("NextDue with one master down: %v", err)
	}
}
