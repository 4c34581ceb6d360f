package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/store"
	"github.com/notifier/notifier/store/redistest"
	"github.com/redis/go-redis/v9"
)

// TestParkedForAPartnerThatLeftTheConfig: a notice parked for a partner
// that serve no longer publishes is still listed as parked, its state is
// parked, and the partner is named by ParkedPartners until Unpark re-arms
// it (which also forgets the name).
func TestParkedForAPartnerThatLeftTheConfig(t *testing.T) {
	srv := redistest.Start(t)
	q := store.NewRedis(srv.Client(), "", nil)
	ctx := context.Background()
	n := newNotice("p1", time.Now().Add(-time.Second), "0,1h")
	if errs, err := q.Enqueue(ctx, []notifier.Notice{n}); err != nil || errs[0] != nil {
		t.Fatalf("Enqueue: %v %v", errs, err)
	}
	_, jobs, err := q.Claim(ctx, []notifier.Trigger{{ID: "p1", Stamp: n.Stamp, N: 1}}, time.Minute)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("Claim = %v, %v", jobs, err)
	}
	if kept, err := q.Park(ctx, jobs[0], "old"); err != nil || !kept {
		t.Fatalf("Park = %v, %v", kept, err)
	}
	// The next serve's config has no partner "old".
	if err := q.PublishPartners(ctx, map[string]string{}); err != nil {
		t.Fatal(err)
	}
	var listed []notifier.PendingNotice
	if err := q.EachPending(ctx, func(p notifier.PendingNotice) error { listed = append(listed, p); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0].Notice.ID != "p1" || !listed[0].Parked {
		t.Fatalf("EachPending = %+v, want p1 parked", listed)
	}
	if st, err := q.State(ctx, "p1"); err != nil || st != notifier.StateParked {
		t.Errorf("State = %q, %v; want parked", st, err)
	}
	if names, err := q.ParkedPartners(ctx); err != nil || !slices.Equal(names, []string{"old"}) {
		t.Fatalf("ParkedPartners = %v, %v; want [old]", names, err)
	}
	// Status reads why it waits: the partner, its pause reason and time.
	pausedAt := time.Now().Truncate(time.Millisecond)
	if err := q.Pause(ctx, "old", "3 failed attempts in a row"); err != nil {
		t.Fatal(err)
	}
	p, err := q.PendingHeader(ctx, "p1")
	if err != nil || p.N != 1 || !p.Notice.Stamp.Equal(n.Stamp) || p.Parked == nil {
		t.Fatalf("PendingHeader = %+v, %v; want attempt 1 parked", p, err)
	}
	if p.Parked.Partner != "old" || p.Parked.Reason != "3 failed attempts in a row" || p.Parked.Since.Before(pausedAt) {
		t.Errorf("Parked = %+v; want partner old, its reason, paused at or after %v", *p.Parked, pausedAt)
	}
	if re, err := q.Unpark(ctx, "old"); err != nil || re != 1 {
		t.Fatalf("Unpark = %d, %v; want 1", re, err)
	}
	if names, err := q.ParkedPartners(ctx); err != nil || len(names) != 0 {
		t.Errorf("ParkedPartners after Unpark = %v, %v; want none", names, err)
	}
	if st, err := q.State(ctx, "p1"); err != nil || st != notifier.StatePending {
		t.Errorf("State after Unpark = %q, %v; want pending", st, err)
	}

	t.Run("RegisterParkedFindsSetsOfAnOlderRelease", func(t *testing.T) {
		// A parked set written without its name recorded.
		if err := srv.Client().ZAdd(ctx, q.Keys().Parked("legacy"), redisZ(q.Keys().Member(notifier.Trigger{ID: "p2", Stamp: n.Stamp, N: 1}))).Err(); err != nil {
			t.Fatal(err)
		}
		if err := q.RegisterParked(ctx, []string{"legacy", "empty"}); err != nil {
			t.Fatal(err)
		}
		if names, err := q.ParkedPartners(ctx); err != nil || !slices.Equal(names, []string{"legacy"}) {
			t.Errorf("ParkedPartners = %v, %v; want [legacy]", names, err)
		}
	})
}

func redisZ(member string) redis.Z { return redis.Z{Score: 1, Member: member} }
