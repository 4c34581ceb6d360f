package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
	"github.com/redis/go-redis/v9"
)

// TestEnqueueSentAgainKnowsItsOwnNotice: an enqueue call whose reply was
// lost is sent again; by then the notice it stored may have been delivered
// (or given up, or cancelled). The call sent again must say "stored", not
// "duplicate", and must not store the notice a second time; another call
// for the id is still a duplicate.
func TestEnqueueSentAgainKnowsItsOwnNotice(t *testing.T) {
	r, rdb := newInternalRedis(t, "always")
	ctx := context.Background()
	// send runs call c, as sent again after a lost reply if resent.
	send := func(c scriptCall, resent bool) *redis.Cmd {
		t.Helper()
		if resent {
			c.args = append([]any(nil), c.args...)
			c.args[resentArg] = "1"
		}
		cmds, err := r.evalPipelined(ctx, []scriptCall{c})
		if err != nil {
			t.Fatal(err)
		}
		return cmds[0]
	}
	codes := func(c scriptCall, resent bool) []int64 {
		t.Helper()
		v, err := send(c, resent).Int64Slice()
		if err != nil || len(v) != len(c.keys)/2-2 {
			t.Fatalf("reply %v, %v; want a code per notice", v, err)
		}
		return v
	}
	run := func(c scriptCall, resent bool) int { t.Helper(); return int(codes(c, resent)[0]) }
	callFor := func(ns ...*notifier.Notice) scriptCall {
		t.Helper()
		b := r.newEnqueueBatch(ns[0].ID, "0")
		for i, n := range ns {
			p, err := encodePayload(n)
			if err != nil {
				t.Fatal(err)
			}
			r.addToBatch(b, n, p, i)
		}
		return b.call
	}
	t.Run("AnIdTwiceInOneCall", func(t *testing.T) {
		n := notifier.Notice{ID: "n-twice", URL: "https://p.example/n", Schedule: backoff.Schedule{0},
			Stamp: time.Now().Truncate(time.Millisecond)}
		call := callFor(&n, &n)
		if v := codes(call, false); v[0] != 1 || v[1] != 0 {
			t.Fatalf("first send = %v, want [1 0] (stored, then already pending)", v)
		}
		if v := codes(call, true); v[0] != 3 || v[1] != 0 {
			t.Fatalf("sent again = %v, want [3 0]: the receipt answers for the first only", v)
		}
		// A payload too large for a bucket is stored under its own key,
		// which the call read before storing it: the second is still
		// refused.
		big := notifier.Notice{ID: "n-twice-large", URL: "https://p.example/n", Schedule: backoff.Schedule{0},
			Stamp: time.Now().Truncate(time.Millisecond), Body: []byte(strings.Repeat("x", 2*recordValueMax))}
		if v := codes(callFor(&big, &big), false); v[0] != 1 || v[1] != 0 {
			t.Fatalf("a large payload twice in one call = %v, want [1 0]", v)
		}
	})
	t.Run("AFailurePartWayIsAnsweredAgain", func(t *testing.T) {
		stamp := time.Now().Truncate(time.Millisecond)
		// A key of the wrong type at the first node of a live generation
		// on the second id's route only: a WRONGTYPE for its dedup lookup.
		ids, routeStart := idsRoutedApart("f-")
		var ns []*notifier.Notice
		for _, id := range ids {
			ns = append(ns, &notifier.Notice{ID: id, URL: "https://p.example/n", Schedule: backoff.Schedule{0}, Stamp: stamp})
		}
		const gen = "1000.1"
		dir, node := r.keys.DedupDir(ids[1]), r.keys.DedupNodes(ids[1])+gen+":"+string(routeStart(ids[1]))
		rdb.HSet(ctx, dir, gen, time.Now().Add(time.Hour).UnixMilli())
		rdb.Set(ctx, node, "not a set", 0)
		call := callFor(ns...)
		answers := func(resent bool) []any {
			t.Helper()
			v, err := send(call, resent).Slice()
			if err != nil || len(v) != 4 {
				t.Fatalf("reply %v, %v; want three codes and the error", v, err)
			}
			return v
		}
		first := answers(false)
		if first[0] != int64(1) || first[1] != int64(-1) || first[2] != int64(-2) || !strings.Contains(fmt.Sprint(first[3]), "WRONGTYPE") {
			t.Fatalf("first send = %v, want [1 -1 -2 WRONGTYPE...]", first)
		}
		// Sent again once the cause is gone, it still answers as its first
		// send did, and stores nothing: f-3 was never stored by this call.
		rdb.Del(ctx, node)
		rdb.HDel(ctx, dir, gen)
		again := answers(true)
		if again[0] != int64(3) || again[1] != int64(-1) || again[2] != int64(-2) || again[3] != first[3] {
			t.Fatalf("sent again = %v, want [3 -1 -2 %v]", again, first[3])
		}
		if p := r.PayloadOf(ctx, ids[2]); p != "" {
			t.Errorf("the call sent again stored %s: %q", ids[2], p)
		}
	})
	t.Run("ACallThatStoredNothingLeavesNoReceipt", func(t *testing.T) {
		n := notifier.Notice{ID: "n-nothing", URL: "https://p.example/n", Schedule: backoff.Schedule{0},
			Stamp: time.Now().Truncate(time.Millisecond)}
		if v := run(callFor(&n), false); v != 1 {
			t.Fatalf("first call = %d, want 1", v)
		}
		dup := callFor(&n)
		if v := run(dup, false); v != 0 {
			t.Fatalf("a second call for the id = %d, want 0 (already pending)", v)
		}
		if got := rdb.HExists(ctx, dup.keys[2], fmt.Sprint(dup.args[7])).Val(); got {
			t.Errorf("a call that stored nothing left a receipt")
		}
		// Given up before the duplicate's reply was found lost: sent
		// again, it runs anew, as a call that never ran would.
		rdb.ZRem(ctx, r.keys.DueOf(n.ID), r.keys.Member(notifier.Trigger{ID: n.ID, Stamp: n.Stamp, N: 1}))
		if err := r.RemovePayload(ctx, n.ID); err != nil {
			t.Fatal(err)
		}
		if v := run(dup, true); v != 1 {
			t.Errorf("the duplicate sent again = %d, want 1 (stored now)", v)
		}
	})
	for _, ended := range []struct{ name, payload string }{
		{"Delivered", ""}, {"Cancelled", tombCancelled}, {"GaveUp", ""},
	} {
		t.Run(ended.name, func(t *testing.T) {
			n := notifier.Notice{ID: "n-" + ended.name, URL: "https://p.example/n", Schedule: backoff.Schedule{0},
				Stamp: time.Now().Truncate(time.Millisecond)}
			call := callFor(&n)
			if v := run(call, false); v != 1 {
				t.Fatalf("first send = %d, want 1 (stored)", v)
			}
			// Delivered (or ended otherwise) before the reply's loss was noticed.
			rdb.ZRem(ctx, r.keys.DueOf(n.ID), r.keys.Member(notifier.Trigger{ID: n.ID, Stamp: n.Stamp, N: 1}))
			if ended.payload == "" {
				if err := r.RemovePayload(ctx, n.ID); err != nil {
					t.Fatal(err)
				}
				if ended.name == "Delivered" {
					remember(t, r, n.ID)
				}
			} else {
				if err := r.RemovePayload(ctx, n.ID); err != nil {
					t.Fatal(err)
				}
				rdb.Set(ctx, r.keys.Payload(n.ID), ended.payload, time.Hour)
			}
			if v := run(call, true); v != 3 {
				t.Fatalf("the same call sent again = %d, want 3 (stored by its first send)", v)
			}
			if p := r.PayloadOf(ctx, n.ID); p != "" && p != ended.payload {
				t.Errorf("the call sent again stored the notice again")
			}
			other := callFor(&n)
			want := 1 // a given-up or cancelled id may be enqueued again
			if ended.name == "Delivered" {
				want = 2
			}
			if v := run(other, true); v != want {
				t.Errorf("another call for the id = %d, want %d", v, want)
			}
		})
	}
}
