package notifier

import (
	"context"
	"errors"
	"log/slog"
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
	// inFlight counts the attempts workers are making.
	inFlight atomic.Int64
	// queued holds the triggers whose events wait in the intake queue.
	queued queuedSet

	stats Stats
}

// intakeQueue is how many triggers wait for free workers before the
// listener waits too.
const intakeQueue = 4096

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

// AddObserver adds f to the functions told of every attempt logged (after
// Observe and those added before). Call it before Run.
func (d *Dispatcher) AddObserver(f func(Attempt)) {
	if prev := d.Observe; prev != nil {
		d.Observe = func(a Attempt) { prev(a); f(a) }
		return
	}
	d.Observe = f
}

// Stats returns the dispatcher's counters.
func (d *Dispatcher) Stats() *Stats { return &d.stats }

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
	intake := make(chan intakeItem, intakeQueue)
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
	// Said at once, so an operator watching a stop knows what it waits for.
	if n := d.inFlight.Load(); n > 0 {
		d.Logger.Info("stopping: letting attempts in flight finish (a second signal exits at once)",
			"in_flight", n, "grace", d.ShutdownGrace)
	}
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
