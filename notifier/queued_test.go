package notifier

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"
)

// overdueQueue is a Queue whose only working method is Overdue, which
// returns ts; the sweep needs nothing else.
type overdueQueue struct {
	Queue
	ts []Trigger
}

func (q overdueQueue) Overdue(context.Context, time.Time, time.Time, int) ([]Trigger, error) {
	return q.ts, nil
}

// TestSweepSkipsQueuedEvents: a trigger whose expired event waits in the
// intake queue is not queued a second time by the sweep (its second claim
// could only fail), while an overdue trigger without an event is.
func TestSweepSkipsQueuedEvents(t *testing.T) {
	stamp := time.UnixMilli(1_700_000_000_000)
	queued := Trigger{ID: "queued", Stamp: stamp, N: 2}
	lost := Trigger{ID: "lost", Stamp: stamp, N: 1}
	// The sweep's triggers carry their due-index score; events do not.
	swept := []Trigger{queued, lost}
	for i := range swept {
		swept[i].Due = stamp.Add(time.Second)
	}
	d := &Dispatcher{Queue: overdueQueue{ts: swept}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		SweepInterval: time.Hour}
	d.defaults()
	d.queued.add(queued) // as listen does for an event

	ctx, cancel := context.WithCancel(context.Background())
	intake := make(chan intakeItem) // unbuffered: items arrive in the sweep's order
	sweepNow := make(chan time.Duration, 1)
	done := make(chan struct{})
	go func() { d.sweep(ctx, intake, sweepNow); close(done) }()
	defer func() { cancel(); <-done }()
	sweepNow <- 0
	select {
	case it := <-intake:
		// queued comes first in the page: receiving lost first proves
		// the sweep passed over it.
		if it.t.ID != "lost" || !it.swept {
			t.Fatalf("the sweep queued %+v first, want the trigger without an event", it)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the sweep queued nothing in 30 s")
	}

	// Once the event has left the queue (claimed or dropped by a failed
	// claim), the sweep takes the trigger if it is still overdue.
	d.queued.remove(queued)
	sweepNow <- 0
	select {
	case it := <-intake:
		if it.t.ID != "queued" {
			t.Fatalf("the second sweep queued %+v, want the trigger whose event left the queue", it)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the second sweep queued nothing in 30 s")
	}
}
