package notifier

import (
	"context"
	"sync"
	"time"
)

type intakeItem struct {
	t     Trigger
	swept bool
}

// intake claims triggers as workers come free and starts an attempt for
// each claim.
func (d *Dispatcher) intake(ctx, workCtx context.Context, intake <-chan intakeItem, sem chan struct{}, workers *sync.WaitGroup) {
	const maxBatch = 64
	pool := &workerPool{work: make(chan Job), workers: workers, idle: workerIdle, run: func(job Job) {
		d.attempt(workCtx, job)
		d.inFlight.Add(-1)
		<-sem
	}}
	defer pool.close()
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
			if !it.swept {
				d.queued.remove(it.t)
			}
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
				d.inFlight.Add(1)
				pool.do(job)
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

// workerIdle is how long a worker waits for its next attempt before it
// exits.
const workerIdle = 10 * time.Second

// workerPool runs attempts on goroutines that outlive one attempt. A
// goroutine started per attempt began with a small stack and, deep in
// net/http, grew it by copying it several times: a tenth of serve's CPU
// under load in profiles of make bench's throughput scenario
// (runtime.newstack). A worker keeps its grown stack from one attempt to
// the next, bar the halving a garbage collection may give an idle one.
// The dispatcher's semaphore, not the pool, bounds the attempts in flight:
// the pool only starts a worker when none is waiting for work.
type workerPool struct {
	work    chan Job // unbuffered: a send succeeds only if a worker waits
	run     func(Job)
	workers *sync.WaitGroup
	idle    time.Duration
}

// do hands job to a waiting worker, or to a new one.
func (p *workerPool) do(job Job) {
	select {
	case p.work <- job:
	default:
		p.workers.Add(1)
		go p.worker(job)
	}
}

// worker runs job, then the jobs handed to it, until the pool is closed
// or no job comes for p.idle.
func (p *workerPool) worker(job Job) {
	defer p.workers.Done()
	growStack()
	idle := time.NewTimer(p.idle)
	defer idle.Stop()
	for {
		p.run(job)
		idle.Reset(p.idle)
		select {
		case next, ok := <-p.work:
			if !ok {
				return
			}
			job = next
		case <-idle.C:
			return
		}
	}
}

// close lets the workers exit once their attempts are done. Only the
// sender (intake) calls it, after its last do.
func (p *workerPool) close() { close(p.work) }

// growStack grows a new worker's stack to 16 KiB at once, while it holds
// two frames and the copy is cheap, rather than step by step deep in
// net/http during its first attempt. Workers start often enough under
// load (one whenever none waits) for this to show: runtime.newstack was
// 0.75% of serve's CPU with it and 3.5% without it in the same profile.
//
//go:noinline
func growStack() {
	var b [8 << 10]byte
	touchStack(b[:])
}

// touchStack keeps growStack's array, which it would otherwise drop as
// unused.
//
//go:noinline
func touchStack(b []byte) { b[len(b)-1] = 1 }
