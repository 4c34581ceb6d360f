package notifier

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// attempt makes one claimed attempt, stores what comes next, and logs it.
func (d *Dispatcher) attempt(ctx context.Context, job Job) {
	n := &job.Notice
	due, _ := n.Schedule.Due(n.Stamp, job.N)
	if job.Due.After(due) {
		due = job.Due
	}
	if d.catchUp != nil && !job.Due.IsZero() && job.Due.Before(d.started) {
		// Backlog of downtime: over the catch-up rate, the attempt is
		// re-armed for its turn as a scheduled trigger, never held by a
		// sleeping worker (that would eat into its lease).
		if wait := d.catchUp.Reserve().Delay(); wait > 0 {
			d.stats.CaughtUp.Add(1)
			if _, err := d.complete(Completion{Job: job, Next: job.N, Due: d.Now().Add(wait)}); err != nil {
				d.Logger.Error("re-arm catch-up attempt", "id", n.ID, "n", job.N, "err", err)
			}
			return
		}
	}
	p := d.Partners.Resolve(n)
	if p != nil && d.Pauser != nil && d.isPaused(p.Name) && d.stillPaused(ctx, p.Name) {
		d.park(ctx, job, p.Name)
		return
	}
	release, retryIn, ok := d.Partners.acquire(p, n)
	if !ok {
		// The partner has all the attempts in flight it may: this one waits
		// as a scheduled trigger, holding no worker, so the partner cannot
		// starve the others. The wait grows while the partner stays full.
		d.stats.Deferred.Add(1)
		d.rearm(job, d.Now().Add(retryIn+time.Duration(rand.Int64N(int64(retryIn/2)+1))))
		return
	}
	defer release()
	if p != nil && p.lim != nil {
		key := Trigger{ID: n.ID, Stamp: n.Stamp, N: job.N}
		if _, held := d.rateHeld.LoadAndDelete(key); !held {
			if wait := p.lim.Reserve().Delay(); wait > 0 {
				d.stats.Deferred.Add(1)
				d.holdRate(key, wait)
				d.rearm(job, d.Now().Add(wait))
				return
			}
		}
	}
	opts := PostOptions{Secrets: n.Secrets}
	rule := n.Success
	name := ""
	if p != nil {
		name = p.Name
		opts.Secrets = append(slices.Clip(n.Secrets), p.Secrets...)
		opts.Timeout = p.Timeout
		opts.Partner = p.Name
		if rule.IsZero() {
			rule = p.Success
		}
	}
	if !d.holdLease(ctx, job, opts.Timeout) {
		return
	}
	res := d.Post(ctx, n, job.N, opts)
	dec := Decide(Verdict{Notice: n, N: job.N, Result: res, Rule: rule, Partner: p,
		CanPause: d.Pauser != nil, Aborted: ctx.Err() != nil, Rand: rand.Float64()})
	a := Attempt{
		NoticeID: n.ID, Stamp: n.Stamp, N: job.N, Due: due, Start: res.Start, Duration: res.Duration,
		URL: RedactURL(n.URL), Status: res.Status, Response: string(res.Snippet), Partner: name,
		Outcome: dec.Outcome, Error: dec.Error, Trace: n.Trace,
	}
	// Completing must happen even while shutting down.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var kept bool
	var err error
	switch dec.Action {
	case Release:
		a.Next = d.Now()
		kept, err = true, d.Queue.Release(sctx, job)
	case End:
		kept, err = d.complete(Completion{Job: job, Ended: dec.Outcome})
	case Park:
		d.partnerResult(sctx, p, false, dec.PauseReason)
		if kept, err = d.Pauser.Park(sctx, job, p.Name); err == nil {
			d.stats.Parked.Add(1)
		}
	case Arm:
		a.Next = dec.Due
		kept, err = d.complete(Completion{Job: job, Next: dec.Next, Due: dec.Due})
	}
	if p != nil && p.PauseAfter > 0 && dec.PauseReason == "" && ctx.Err() == nil {
		d.partnerResult(sctx, p, dec.Succeeded, "")
	}
	if err != nil {
		// The lease will run out and the attempt will be made again.
		a.Outcome, a.Next = Error, time.Time{}
		a.Error = fmt.Sprintf("result not saved, attempt will be repeated: %v", err)
		d.Logger.Error("save attempt result", "id", n.ID, "n", job.N, "err", err)
	} else if !kept {
		d.stats.Lost.Add(1)
		d.Logger.Warn("claim ran out before the attempt ended; another worker took it over", "id", n.ID, "n", job.N)
	}
	d.count(a.Outcome)
	// Only the worker whose completion ended the notice archives and
	// alerts: after a lost claim (a lease taken over, a cancel) another
	// worker or the operator decided what happens to it.
	ended := err == nil && kept
	if ended && (a.Outcome == Delivered || a.Outcome == GaveUp || a.Outcome == Blocked) {
		// Archived for retry and replay, without its own secrets: they
		// must never reach the attempt log's file. Replays are signed
		// with the partner's secrets from the config.
		ended := *n
		ended.Secrets = nil
		a.Ended = &ended
	}
	if ended && (a.Outcome == GaveUp || a.Outcome == Blocked) {
		d.Logger.Warn("gave up a notice", "id", n.ID, "partner", name, "attempts", job.N, "status", res.Status, "err", a.Error)
		if d.GaveUp != nil {
			d.GaveUp(a)
		}
	}
	if err := d.Log.Record(sctx, a); err != nil {
		d.Logger.Error("record attempt", "id", n.ID, "n", job.N, "err", err)
	}
	if d.Observe != nil {
		d.Observe(a)
	}
}

// rearm hands job's attempt back for later, at due, without counting it as
// an attempt.
func (d *Dispatcher) rearm(job Job, due time.Time) {
	if _, err := d.complete(Completion{Job: job, Next: job.N, Due: due}); err != nil {
		d.Logger.Error("re-arm attempt", "id", job.Notice.ID, "n", job.N, "err", err)
	}
}

// holdRate remembers that the attempt key, re-armed to wait its turn under
// its partner's rate limit, holds a reservation. Entries of attempts that
// never come back here (claimed by another serve, cancelled) are dropped
// once well past their time, so the map cannot grow without bound.
func (d *Dispatcher) holdRate(key Trigger, wait time.Duration) {
	until := d.Now().Add(wait)
	d.rateHeld.Store(key, until)
	if d.rateHolds.Add(1)%1024 == 0 {
		stale := d.Now().Add(-10 * time.Minute)
		d.rateHeld.Range(func(k, v any) bool {
			if t, _ := v.(time.Time); t.Before(stale) {
				d.rateHeld.Delete(k)
			}
			return true
		})
	}
}

func (d *Dispatcher) count(o Outcome) {
	d.stats.Attempts.Add(1)
	switch o {
	case Delivered:
		d.stats.Delivered.Add(1)
	case Retry:
		d.stats.Retried.Add(1)
	case GaveUp, Blocked:
		d.stats.GaveUp.Add(1)
	case Error:
		d.stats.Errors.Add(1)
	}
}
