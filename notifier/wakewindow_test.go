package notifier

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestWakeWindow(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_000)
	at := func(ms int64) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	tr := func(id string, ms int64) Trigger { return Trigger{ID: id, Stamp: t0, N: 2, Due: at(ms)} }
	a, b, c, d := tr("a", 10), tr("b", 20), tr("c", 20), tr("d", 30)

	type read struct {
		now       time.Time
		wantFrom  time.Time // where the read starts
		page      []Trigger
		full      bool
		wantFresh []Trigger
		alive     []bool // for wantFresh, as the touch found them
	}
	tests := []struct {
		name  string
		reads []read
	}{
		{"the first read starts at the beginning; the next just after it", []read{
			{now: at(41), page: []Trigger{a, b}, wantFresh: []Trigger{a, b}, alive: []bool{false, false}},
			{now: at(51), wantFrom: at(41)},
		}},
		{"a full page: the next read starts at its last due time and skips what was touched there", []read{
			{now: at(41), page: []Trigger{a, b}, full: true, wantFresh: []Trigger{a, b}, alive: []bool{false, false}},
			{now: at(42), wantFrom: at(20), page: []Trigger{b, c}, full: true, wantFresh: []Trigger{c}, alive: []bool{false}},
			{now: at(43), wantFrom: at(20), page: []Trigger{b, c, d}, wantFresh: []Trigger{d}, alive: []bool{false}},
			{now: at(44), wantFrom: at(43)},
		}},
		{"a key still there is read and touched again", []read{
			{now: at(41), page: []Trigger{a, b, d}, wantFresh: []Trigger{a, b, d}, alive: []bool{false, true, false}},
			{now: at(42), wantFrom: at(20), page: []Trigger{b, d}, wantFresh: []Trigger{b}, alive: []bool{false}},
			{now: at(43), wantFrom: at(42)},
		}},
		{"a trigger read again with another due time (its lease ran out) is touched again", []read{
			{now: at(41), page: []Trigger{b, c}, full: true, wantFresh: []Trigger{b, c}, alive: []bool{false, false}},
			{now: at(42), wantFrom: at(20), page: []Trigger{c, tr("b", 25)}, wantFresh: []Trigger{tr("b", 25)}, alive: []bool{false}},
		}},
		{"a rescan a second after the last one reads from the beginning again, skipping what it touched", []read{
			{now: at(41), page: []Trigger{a}, wantFresh: []Trigger{a}, alive: []bool{false}},
			{now: at(500), wantFrom: at(41), page: []Trigger{b}, wantFresh: []Trigger{b}, alive: []bool{false}},
			{now: at(1041), page: []Trigger{a, b, tr("e", 5)}, wantFresh: []Trigger{tr("e", 5)}, alive: []bool{false}},
			{now: at(1100), wantFrom: at(1041)},
		}},
		{"a rescan forgets what it no longer finds, so it is touched if it comes back", []read{
			{now: at(41), page: []Trigger{a, b}, wantFresh: []Trigger{a, b}, alive: []bool{false, false}},
			{now: at(1041), page: []Trigger{b}},                                                   // a was claimed
			{now: at(2041), page: []Trigger{a, b}, wantFresh: []Trigger{a}, alive: []bool{false}}, // a handed back
			{now: at(3041), page: nil},                                                            // both claimed
			{now: at(4041), page: []Trigger{b}, wantFresh: []Trigger{b}, alive: []bool{false}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w wakeWindow
			for i, r := range tt.reads {
				if got := w.start(r.now); !got.Equal(r.wantFrom) {
					t.Fatalf("read %d starts at %v, want %v", i, got, r.wantFrom)
				}
				fresh := w.fresh(r.page)
				if len(fresh) != len(r.wantFresh) {
					t.Fatalf("read %d: fresh %v, want %v", i, fresh, r.wantFresh)
				}
				for j := range fresh {
					if fresh[j] != r.wantFresh[j] {
						t.Fatalf("read %d: fresh %v, want %v", i, fresh, r.wantFresh)
					}
				}
				w.advance(r.page, r.full, r.now.Add(-time.Millisecond), fresh, r.alive)
			}
		})
	}
}

func TestWakeWindowReset(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_000)
	var w wakeWindow
	w.start(t0)
	w.advance(nil, false, t0, nil, nil)
	if got := w.start(t0.Add(10 * time.Millisecond)); got.IsZero() {
		t.Fatal("the second read starts at the beginning without a reset")
	}
	w.reset()
	if got := w.start(t0.Add(20 * time.Millisecond)); !got.IsZero() {
		t.Fatalf("after a reset the read starts at %v, want the beginning", got)
	}
}

func TestWakeWindowBound(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_000)
	var w wakeWindow
	w.start(t0) // the first read is a rescan; the second is not
	w.advance(nil, false, t0, nil, nil)
	w.start(t0.Add(time.Millisecond))
	page := make([]Trigger, wakeRemember+1)
	alive := make([]bool, len(page))
	for i := range page {
		page[i] = Trigger{ID: fmt.Sprint(i), Stamp: t0, N: 1, Due: t0.Add(-time.Duration(i) * time.Millisecond)}
	}
	w.advance(page, false, t0, page, alive)
	if len(w.touched) != 0 {
		t.Fatalf("remembers %d touched triggers before the watermark, past the bound of %d", len(w.touched), wakeRemember)
	}
	w.start(t0.Add(2 * time.Millisecond))
	w.advance(page[:10], false, t0, page[:10], alive[:10])
	if len(w.touched) != 10 {
		t.Fatalf("remembers %d touched triggers under the bound, want 10", len(w.touched))
	}
}

// TestWakeWaitsForBusyIntake: with half the intake queue waiting, the
// waker reads nothing (a nil Queue would panic if it did) and comes back
// after WakeInterval.
func TestWakeWaitsForBusyIntake(t *testing.T) {
	d := &Dispatcher{WakeInterval: 7 * time.Millisecond}
	t0 := time.UnixMilli(1_700_000_000_000)
	for i := range intakeQueue / 2 {
		d.queued.add(Trigger{ID: fmt.Sprint(i), Stamp: t0, N: 1})
	}
	var w wakeWindow
	idle := d.WakeInterval
	sleep, err := d.wakeOnce(context.Background(), &w, &idle)
	if err != nil || sleep != d.WakeInterval {
		t.Fatalf("wakeOnce = %v, %v; want %v, nil", sleep, err, d.WakeInterval)
	}
}
