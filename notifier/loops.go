package notifier

import (
	"context"
	"log/slog"
	"time"
)

func (d *Dispatcher) listen(ctx context.Context, intake chan<- intakeItem, sweepNow chan time.Duration, wakeNow chan struct{}) {
	h := Handlers{
		Ready: func() {
			// Anything that came due while nobody listened fired
			// unheard: sweep without grace.
			select {
			case sweepNow <- 0:
			default:
			}
		},
		Fire: func(t Trigger) {
			d.queued.add(t)
			select {
			case intake <- intakeItem{t: t}:
			case <-ctx.Done():
				d.queued.remove(t)
			}
		},
		Wake: func() {
			select {
			case wakeNow <- struct{}{}:
			default:
			}
		},
		Partners: func() {
			select {
			case d.pausesNow <- struct{}{}:
			default:
			}
		},
	}
	retry(ctx, d.Logger, "listen for expired events", func() error {
		return d.Events.Listen(ctx, h)
	})
}

// retry runs f until ctx ends, logging its errors and backing off from
// 100 ms up to 5 s between failures.
func retry(ctx context.Context, log *slog.Logger, what string, f func() error) {
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := f()
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > 10*time.Second {
			wait = 100 * time.Millisecond
		}
		if err != nil {
			log.Error(what, "err", err, "retry_in", wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
}

func (d *Dispatcher) sweep(ctx context.Context, intake chan<- intakeItem, sweepNow <-chan time.Duration) {
	tick := time.NewTicker(d.SweepInterval)
	defer tick.Stop()
	failing := false
	// pushed remembers when the sweep queued what is still overdue (not yet
	// claimed), so it is not queued twice, unless it is still unclaimed a
	// while later (its claim failed, say) and must be queued again.
	pushed := map[Trigger]time.Time{}
	for {
		grace := d.SweepGrace
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case grace = <-sweepNow:
		}
		// Page through the overdue attempts while pages bring new ones;
		// pushing blocks while workers are busy, which paces the sweep.
		for {
			ts, err := d.Queue.Overdue(ctx, time.Time{}, d.Now().Add(-grace), sweepPage)
			if err != nil {
				if !failing && ctx.Err() == nil {
					d.Logger.Error("sweep", "err", err)
				}
				failing = true
				break
			}
			if failing {
				d.Logger.Info("sweep works again")
				failing = false
			}
			fresh := 0
			now := d.Now()
			seen := make(map[Trigger]bool, len(ts))
			for _, t := range ts {
				seen[t] = true
				if at, ok := pushed[t]; ok && now.Sub(at) < repushAfter {
					continue // queued already, not claimed yet
				}
				if d.queued.has(t) {
					continue // its event is queued: it will be claimed from there
				}
				pushed[t] = now
				fresh++
				select {
				case intake <- intakeItem{t: t, swept: true}:
				case <-ctx.Done():
					return
				}
			}
			for t := range pushed {
				if !seen[t] {
					delete(pushed, t) // claimed
				}
			}
			if fresh == 0 || len(ts) < sweepPage {
				break
			}
		}
	}
}

// repushAfter is how long the sweep trusts that a trigger it queued is on
// its way to a claim; one still overdue after that (its claim failed) is
// queued again.
const repushAfter = 10 * time.Second

// sweepPage is larger than the intake queue, so a page always reaches past
// what the sweep queued before and is still waiting to be claimed.
const sweepPage = 8192

// wake touches due trigger keys so Redis fires their events now. It sleeps
// until the next due time (at most WakeInterval, so attempts armed by other
// processes are found), or until a wake hint says an attempt was armed
// already due. It reads the due index from a watermark (wakeWindow), so a
// trigger whose event is on its way is neither read nor touched again;
// what it touched and is still unclaimed after SweepGrace is the sweep's.
func (d *Dispatcher) wake(ctx context.Context, wakeNow <-chan struct{}) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var w wakeWindow
	failing := false
	idle := d.WakeInterval
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-wakeNow:
			timer.Stop()
			idle = d.WakeInterval
			w.reset() // armed already due: before the watermark, perhaps
		}
		sleep, err := d.wakeOnce(ctx, &w, &idle)
		if err != nil && !failing && ctx.Err() == nil {
			d.Logger.Error("wake due triggers", "err", err)
		}
		failing = err != nil
		timer.Reset(sleep)
	}
}

// wakePage bounds the overdue triggers read per tick. It is large so that,
// under a backlog, keys past those already touched (waiting to be claimed)
// are touched too, instead of waiting for Redis's expiry cycle, which spends
// at most about a quarter of a core on them.
const wakePage = 4096

// wakeOnce touches what is due and says how long to sleep. While a backlog
// leaves nothing new to touch, it backs off (idle doubles up to 100 ms);
// the next due time and wake hints still wake it on time.
func (d *Dispatcher) wakeOnce(ctx context.Context, w *wakeWindow, idle *time.Duration) (time.Duration, error) {
	if d.queued.len() >= intakeQueue/2 {
		// Half the intake queue already waits for free workers:
		// touching more would only queue more behind them, and cost
		// a read of the index and a command per key for nothing (a
		// tenth of serve's CPU with 100,000 attempts due at once).
		// The wait in the queue, not Redis, makes them late now.
		return d.WakeInterval, nil
	}
	now := d.Now()
	// Redis expires a key only strictly after its expiry millisecond.
	upto := now.Add(-time.Millisecond)
	ts, err := d.Queue.Overdue(ctx, w.start(now), upto, wakePage)
	if err != nil {
		w.reset()
		return d.WakeInterval, err
	}
	todo := w.fresh(ts)
	sleep := d.WakeInterval
	if len(todo) == 0 && len(ts) > 0 {
		*idle = min(*idle*2, 100*time.Millisecond)
		sleep = *idle
	} else {
		*idle = d.WakeInterval
	}
	var alive []bool
	if len(todo) > 0 {
		if alive, err = d.Queue.Nudge(ctx, todo); err != nil {
			return d.WakeInterval, err
		}
		for _, a := range alive {
			if a {
				// A key still there is not due by Redis's clock yet:
				// touch it again very soon.
				sleep = time.Millisecond
			}
		}
	}
	w.advance(ts, len(ts) == wakePage, upto, todo, alive)
	next, ok, err := d.Queue.NextDue(ctx, now.Add(-time.Millisecond))
	if err != nil {
		return d.WakeInterval, err
	}
	if ok {
		// Wake 1 ms after the due millisecond, when Redis will expire it.
		sleep = min(sleep, max(next.Sub(d.Now())+time.Millisecond, 0))
	}
	return sleep, nil
}
