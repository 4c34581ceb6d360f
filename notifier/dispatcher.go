package notifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Dispatcher turns due triggers into attempts. Three sources feed it:
//
//   - expiry events (Events.Listen): the normal trigger;
//   - the waker, which every WakeInterval touches trigger keys that are past
//     due so Redis expires them, and publishes their events, at once instead
//     of whenever its expiry cycle gets round to them;
//   - the sweep, which every SweepInterval (and after every (re)subscribe)
//     takes attempts overdue by more than SweepGrace whose event never came.
//
// Each trigger is claimed atomically before it is attempted, so the event
// path and the sweep, and several dispatchers on one Queue, make each
// attempt once. At most Concurrency attempts run at a time; triggers are
// claimed only when a worker is free, so a claim never waits in a queue while
// its lease runs down.
type Dispatcher struct {
	Queue  Queue
	Events Events
	Log    AttemptLog
	// Post makes one attempt; usually (*Deliverer).PostWith.
	Post func(ctx context.Context, n *Notice, attempt int, o PostOptions) Result
	// Partners gives each notice its partner's rules and limits; nil: no
	// partners, and no limit per host.
	Partners *Partners
	// Pauser keeps partners' pause state; nil: partners are never paused.
	Pauser Pauser
	// GaveUp, if set, is told of every notice given up (an alert hook). It
	// must not block.
	GaveUp func(Attempt)
	// Observe, if set, is told of every attempt the dispatcher logs (for
	// metrics). It must not block.
	Observe func(Attempt)
	// Logger receives operational messages; nil discards.
	Logger *slog.Logger
	// Now is the clock (time.Now if nil).
	Now func() time.Time

	// Concurrency is the most attempts in flight (default 512: attempts
	// mostly wait on partners, so the pool is sized for I/O, not cores).
	Concurrency int
	// Lease is how long a claim lasts before another worker may take the
	// attempt over; it must outlast one attempt (default 45 s).
	Lease time.Duration
	// LeaseSlack, if positive, makes every attempt's lease at least its
	// timeout (its partner's, or Timeout) plus LeaseSlack: an attempt
	// whose timeout the claim's Lease would not cover has its lease
	// extended before it is POSTed, so a partner that takes longer than
	// Lease to answer is never POSTed the same attempt twice. Zero: Lease
	// is fixed (serve then refuses a Lease shorter than any timeout).
	LeaseSlack time.Duration
	// Timeout is the attempt timeout of notices without a partner timeout
	// (the deliverer's), for LeaseSlack.
	Timeout time.Duration
	// WakeInterval is how often due triggers are touched (default 10 ms);
	// negative turns the waker off, leaving wake-ups to Redis alone.
	WakeInterval time.Duration
	// SweepInterval is how often the due index is swept (default 1 s).
	SweepInterval time.Duration
	// SweepGrace is how overdue an attempt must be before the sweep takes
	// it without its event (default 2 s).
	SweepGrace time.Duration
	// ShutdownGrace is how long in-flight attempts may run after Run's
	// context ends; then they are cancelled and released (default 10 s).
	ShutdownGrace time.Duration
	// CatchUpRate bounds, per second, the attempts that were due before
	// this dispatcher started: the backlog of downtime, so a restart does
	// not hit partners with a storm (default 500; negative: no bound).
	// Work that comes due while it runs is never held back, however large
	// a burst is.
	CatchUpRate float64

	catchUp     *rate.Limiter
	started     time.Time
	completions chan<- completion
	paused      atomic.Pointer[map[string]PauseState]
	pausesNow   chan struct{}
	// rateHeld marks attempts re-armed to wait for their partner's rate
	// limit: they already hold a reservation, so they skip the limiter once.
	rateHeld  sync.Map // Trigger -> time.Time the reservation is for
	rateHolds atomic.Int64

	stats Stats
}

// Stats counts what a Dispatcher did; read it with (*Dispatcher).Stats.
type Stats struct {
	Attempts, Delivered, Retried, GaveUp, Errors atomic.Int64
	// Stale and Busy count triggers another worker had already handled or
	// was handling; Orphans count attempts whose notice was gone.
	Stale, Busy, Orphans atomic.Int64
	// Recovered counts attempts claimed by the sweep: their event never came.
	Recovered atomic.Int64
	// Lost counts attempts whose claim ran out before they were completed.
	Lost atomic.Int64
	// CaughtUp counts backlog attempts (armed to run before the dispatcher
	// started) that the catch-up rate limit re-armed for later.
	CaughtUp atomic.Int64
	// Deferred counts attempts re-armed for later because their partner
	// was at its concurrency or rate limit; Parked, attempts set aside
	// because their partner is paused; Paused, partners this dispatcher
	// paused.
	Deferred, Parked, Paused atomic.Int64
}

// Stats returns the dispatcher's counters.
func (d *Dispatcher) Stats() *Stats { return &d.stats }

type intakeItem struct {
	t     Trigger
	swept bool
}

func (d *Dispatcher) defaults() {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Concurrency <= 0 {
		d.Concurrency = 512
	}
	if d.Lease <= 0 {
		d.Lease = 45 * time.Second
	}
	if d.WakeInterval == 0 {
		d.WakeInterval = 10 * time.Millisecond
	}
	if d.SweepInterval <= 0 {
		d.SweepInterval = time.Second
	}
	if d.SweepGrace <= 0 {
		d.SweepGrace = 2 * time.Second
	}
	if d.ShutdownGrace <= 0 {
		d.ShutdownGrace = 10 * time.Second
	}
	if d.CatchUpRate == 0 {
		d.CatchUpRate = 500
	}
	if d.CatchUpRate > 0 {
		d.catchUp = rate.NewLimiter(rate.Limit(d.CatchUpRate), max(int(d.CatchUpRate/10), 1))
	}
	d.started = d.Now()
	d.pausesNow = make(chan struct{}, 1)
}

// Run dispatches until ctx ends, then stops taking work, lets attempts in
// flight finish for up to ShutdownGrace, cancels and releases the rest, and
// returns. Redis being unreachable does not end it: each loop logs and tries
// again with backoff.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.defaults()
	if d.Queue == nil || d.Events == nil || d.Log == nil || d.Post == nil {
		return errors.New("dispatcher: Queue, Events, Log and Post are required")
	}
	intake := make(chan intakeItem, 4096)
	sweepNow := make(chan time.Duration, 1)
	wakeNow := make(chan struct{}, 1)
	// Workers get their own context so shutdown can let them finish.
	workCtx, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	var workers sync.WaitGroup
	sem := make(chan struct{}, d.Concurrency)
	// The completer outlives the workers: it stops only after they have.
	completions := make(chan completion, d.Concurrency)
	completerDone := make(chan struct{})
	go func() { d.completer(completions); close(completerDone) }()
	defer func() { close(completions); <-completerDone }()
	d.completions = completions

	var loops sync.WaitGroup
	for _, loop := range []func(){
		func() { d.listen(ctx, intake, sweepNow, wakeNow) },
		func() { d.sweep(ctx, intake, sweepNow) },
		func() { d.intake(ctx, workCtx, intake, sem, &workers) },
		func() {
			if d.WakeInterval > 0 {
				d.wake(ctx, wakeNow)
			}
		},
		func() { d.watchPauses(ctx) },
	} {
		loops.Add(1)
		go func() { defer loops.Done(); loop() }()
	}
	<-ctx.Done()
	loops.Wait()

	done := make(chan struct{})
	go func() { workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d.ShutdownGrace):
		d.Logger.Warn("cancelling attempts still in flight after the shutdown grace", "grace", d.ShutdownGrace)
		abort()
		<-done
	}
	return nil
}

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
			select {
			case intake <- intakeItem{t: t}:
			case <-ctx.Done():
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
			ts, err := d.Queue.Overdue(ctx, d.Now().Add(-grace), sweepPage)
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
// already due. It remembers what it touched, so a trigger whose event is on
// its way is not touched again; what it touched and is still unclaimed after
// SweepGrace is the sweep's.
func (d *Dispatcher) wake(ctx context.Context, wakeNow <-chan struct{}) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	touched := map[Trigger]bool{}
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
		}
		sleep, err := d.wakeOnce(ctx, touched, &idle)
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
// leaves nothing new to touch, it backs off (idle doubles up to 100 ms) so
// it does not re-read the same page of overdue triggers every few ms; the
// next due time and wake hints still wake it on time.
func (d *Dispatcher) wakeOnce(ctx context.Context, touched map[Trigger]bool, idle *time.Duration) (time.Duration, error) {
	now := d.Now()
	// Redis expires a key only strictly after its expiry millisecond.
	ts, err := d.Queue.Overdue(ctx, now.Add(-time.Millisecond), wakePage)
	if err != nil {
		return d.WakeInterval, err
	}
	seen := make(map[Trigger]bool, len(ts))
	var todo []Trigger
	for _, t := range ts {
		seen[t] = true
		if !touched[t] {
			todo = append(todo, t)
		}
	}
	for t := range touched {
		if !seen[t] {
			delete(touched, t) // claimed: no longer overdue
		}
	}
	sleep := d.WakeInterval
	if len(todo) == 0 && len(ts) > 0 {
		*idle = min(*idle*2, 100*time.Millisecond)
		sleep = *idle
	} else {
		*idle = d.WakeInterval
	}
	if len(todo) > 0 {
		alive, err := d.Queue.Nudge(ctx, todo)
		if err != nil {
			return d.WakeInterval, err
		}
		for i, t := range todo {
			// A key still there is not due by Redis's clock yet: touch
			// it again very soon.
			touched[t] = !alive[i]
			if alive[i] {
				sleep = time.Millisecond
			}
		}
	}
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

// intake claims triggers as workers come free and starts an attempt for
// each claim.
func (d *Dispatcher) intake(ctx, workCtx context.Context, intake <-chan intakeItem, sem chan struct{}, workers *sync.WaitGroup) {
	const maxBatch = 64
	batch := make([]intakeItem, 0, maxBatch)
	wait := 100 * time.Millisecond
	for {
		batch = batch[:0]
		// One free worker first, then the trigger for it; then more
		// triggers only while workers are free for them. Claims are made
		// only when a worker is free for each, so a lease never runs down
		// in a queue, and under load one round trip claims a whole batch.
		// Waiting for a whole batch's worth of workers instead would hold
		// the free ones while a slow partner keeps the rest.
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		select {
		case <-ctx.Done():
			<-sem
			return
		case it := <-intake:
			batch = append(batch, it)
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case sem <- struct{}{}:
			default:
				break drain
			}
			select {
			case it := <-intake:
				batch = append(batch, it)
			default:
				<-sem
				break drain
			}
		}
		ts := make([]Trigger, len(batch))
		for i, it := range batch {
			ts[i] = it.t
		}
		results, jobs, err := d.Queue.Claim(ctx, ts, d.Lease)
		if err != nil {
			for range batch {
				<-sem
			}
			if ctx.Err() != nil {
				return
			}
			// The due index still holds these; the sweep will bring
			// them back once Redis answers.
			d.Logger.Error("claim", "err", err, "dropped_until_sweep", len(batch))
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(wait*2, 5*time.Second)
			continue
		}
		wait = 100 * time.Millisecond
		next, recovered := 0, 0
		for i, r := range results {
			switch r {
			case Claimed:
				job := jobs[next]
				next++
				if batch[i].swept {
					recovered++
					d.Logger.Debug("sweep took an attempt whose expiry event never came", "id", job.Notice.ID, "n", job.N)
				}
				workers.Add(1)
				go func() {
					defer workers.Done()
					defer func() { <-sem }()
					d.attempt(workCtx, job)
				}()
				continue
			case Stale:
				d.stats.Stale.Add(1)
			case Busy:
				d.stats.Busy.Add(1)
			case Orphan, Corrupt:
				d.stats.Orphans.Add(1)
				t := batch[i].t
				d.Logger.Warn("dropped a trigger whose notice is gone or unreadable", "id", t.ID, "n", t.N)
				if r == Corrupt {
					// Its payload was removed: the log says why, and
					// `status` shows the notice as dropped.
					now := d.Now()
					d.count(Error)
					if err := d.Log.Record(ctx, Attempt{NoticeID: t.ID, Stamp: t.Stamp, N: t.N, Due: now, Start: now,
						Outcome: Error, Error: "stored notice is unreadable; dropped"}); err != nil {
						d.Logger.Error("record attempt", "id", t.ID, "err", err)
					}
				}
			}
			<-sem
		}
		if recovered > 0 {
			d.stats.Recovered.Add(int64(recovered))
			d.Logger.Info("sweep took attempts whose expiry events never came", "count", recovered)
		}
	}
}

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
		Outcome: dec.Outcome, Error: dec.Error,
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

// park sets job's attempt aside while its partner is paused.
func (d *Dispatcher) park(ctx context.Context, job Job, partner string) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := d.Pauser.Park(sctx, job, partner); err != nil {
		d.Logger.Error("park attempt of a paused partner", "id", job.Notice.ID, "partner", partner, "err", err)
		return
	}
	d.stats.Parked.Add(1)
}

// partnerResult reports an attempt's result to the shared pause state.
func (d *Dispatcher) partnerResult(ctx context.Context, p *Partner, ok bool, gone string) {
	if d.Pauser == nil {
		return
	}
	paused, err := d.Pauser.PartnerResult(ctx, p.Name, ok, p.PauseAfter, gone)
	if err != nil {
		d.Logger.Error("record partner result", "partner", p.Name, "err", err)
		return
	}
	if paused {
		d.stats.Paused.Add(1)
		d.Logger.Warn("paused a partner; its notices wait until `notifier partner resume`", "partner", p.Name)
		d.refreshPauses(ctx)
	}
}

func (d *Dispatcher) isPaused(name string) bool {
	if m := d.paused.Load(); m != nil {
		return (*m)[name].Paused
	}
	return false
}

// stillPaused asks the store, not the cache, before parking: a partner
// resumed a moment ago must not have its notices parked again.
func (d *Dispatcher) stillPaused(ctx context.Context, name string) bool {
	m, err := d.Pauser.Paused(ctx, []string{name})
	if err != nil {
		return true // the cache said paused; parking loses nothing
	}
	return m[name].Paused
}

// watchPauses keeps the paused-partner cache fresh: a pause or resume by
// another serve or the CLI takes effect here within a second. Every
// orphanCheck (and at start) it re-arms attempts parked for partners that
// are not configured any more, which nobody would ever resume.
func (d *Dispatcher) watchPauses(ctx context.Context) {
	if d.Pauser == nil {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var checked time.Time
	for {
		if time.Since(checked) >= orphanCheck {
			d.unparkOrphans(ctx)
			checked = time.Now()
		}
		if len(d.Partners.Names()) > 0 {
			d.refreshPauses(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.pausesNow:
		}
	}
}

// orphanCheck is how often parked attempts of partners that left the config
// are looked for: they appear only when a serve starts with a new config.
const orphanCheck = 30 * time.Second

// unparkOrphans re-arms, due now, the attempts parked for partners this
// dispatcher does not know: they are sent as notices of no partner.
func (d *Dispatcher) unparkOrphans(ctx context.Context) {
	names, err := d.Pauser.ParkedPartners(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.Logger.Error("read partners with parked attempts", "err", err)
		}
		return
	}
	for _, name := range orphans(names, d.Partners.Names()) {
		n, err := d.Pauser.Unpark(ctx, name)
		if err != nil {
			d.Logger.Error("re-arm attempts parked for a partner no longer configured", "partner", name, "err", err)
			continue
		}
		if n > 0 {
			d.Logger.Warn("re-armed attempts parked for a partner that is no longer configured; they are sent as notices of no partner",
				"partner", name, "count", n)
		}
	}
}

// orphans returns the names in parked that are not in configured.
func orphans(parked, configured []string) []string {
	var out []string
	for _, name := range parked {
		if !slices.Contains(configured, name) {
			out = append(out, name)
		}
	}
	return out
}

func (d *Dispatcher) refreshPauses(ctx context.Context) {
	m, err := d.Pauser.Paused(ctx, d.Partners.Names())
	if err != nil {
		if ctx.Err() == nil {
			d.Logger.Error("read paused partners", "err", err)
		}
		return
	}
	if old := d.paused.Swap(&m); old != nil {
		for name, st := range m {
			if was := (*old)[name]; was.Paused != st.Paused {
				if st.Paused {
					d.Logger.Info("partner paused; its notices are parked until it resumes", "partner", name)
				} else {
					d.Logger.Info("partner resumed", "partner", name)
				}
			}
		}
	}
	for name, st := range m {
		if !st.Paused && st.Parked > 0 {
			// Parked in the moment a resume was running, or resumed by
			// hand in Redis: nothing may stay parked for an active
			// partner.
			if n, err := d.Pauser.Unpark(ctx, name); err != nil {
				d.Logger.Error("re-arm attempts parked for an active partner", "partner", name, "err", err)
			} else if n > 0 {
				d.Logger.Info("re-armed attempts parked for an active partner", "partner", name, "count", n)
			}
		}
	}
}

// completion is a worker's request to end its attempt, answered on reply.
type completion struct {
	c     Completion
	reply chan completed
}

type completed struct {
	kept bool
	err  error
}

// completer ends attempts for the workers, batching what is queued into one
// pipelined round trip: under load a single Redis call ends hundreds of
// attempts; when idle it adds no delay.
func (d *Dispatcher) completer(in <-chan completion) {
	const maxBatch = 256
	batch := make([]completion, 0, maxBatch)
	cs := make([]Completion, 0, maxBatch)
	for first := range in {
		batch = append(batch[:0], first)
	drain:
		for len(batch) < maxBatch {
			select {
			case c, ok := <-in:
				if !ok {
					break drain
				}
				batch = append(batch, c)
			default:
				break drain
			}
		}
		cs = cs[:0]
		for _, c := range batch {
			cs = append(cs, c.c)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		kept, err := d.Queue.Complete(ctx, cs)
		cancel()
		var partial *BatchErrors
		errors.As(err, &partial)
		for i, c := range batch {
			switch {
			case partial != nil && i < len(partial.Errs):
				c.reply <- completed{kept: kept[i], err: partial.Errs[i]}
			case err != nil:
				c.reply <- completed{err: err}
			default:
				c.reply <- completed{kept: kept[i]}
			}
		}
	}
}

// complete ends job's attempt through the completer.
func (d *Dispatcher) complete(c Completion) (bool, error) {
	reply := make(chan completed, 1)
	d.completions <- completion{c: c, reply: reply}
	r := <-reply
	return r.kept, r.err
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
