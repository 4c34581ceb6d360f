package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/store"
	"github.com/redis/go-redis/v9"
)

// dispatcher starts a dispatcher with its own attempt log until stop; with
// serves > 1 (cfg.Serves in a cluster scenario) that many, each with its
// own store and log, as separate serve processes would be.
func dispatcher(cfg Config, q *store.Redis, name string, waker bool) (*notifier.Dispatcher, func() error, error) {
	return dispatchers(cfg, q, name, waker, 1)
}

func dispatchers(cfg Config, q *store.Redis, name string, waker bool, serves int) (*notifier.Dispatcher, func() error, error) {
	var stops []func() error
	var first *notifier.Dispatcher
	stopAll := func() error {
		var err error
		for _, stop := range stops {
			err = joinErr(err, stop())
		}
		return err
	}
	for i := range serves {
		qi := q
		if i > 0 {
			qi = store.NewRedis(cfg.Redis, q.Keys().Prefix, nil)
		}
		alog, err := store.OpenSQLite(filepath.Join(cfg.Dir, fmt.Sprintf("%s-%d.db", name, i)))
		if err != nil {
			return nil, nil, joinErr(err, stopAll())
		}
		ctx, cancel := context.WithCancel(context.Background())
		logDone := make(chan error, 1)
		go func() { logDone <- alog.Run(ctx) }()
		dl := notifier.NewDeliverer(5*time.Second, cfg.Concurrency)
		d := &notifier.Dispatcher{Queue: qi, Events: qi, Log: alog, Post: dl.PostWith, Concurrency: cfg.Concurrency, CatchUpRate: -1}
		if !waker {
			d.WakeInterval = -1
		}
		runCtx, stopRun := context.WithCancel(context.Background())
		runDone := make(chan error, 1)
		go func() { runDone <- d.Run(runCtx) }()
		stops = append(stops, func() error {
			stopRun()
			err := <-runDone
			cancel()
			err = joinErr(err, <-logDone)
			return joinErr(err, alog.Close())
		})
		if first == nil {
			first = d
		}
	}
	return first, stopAll, nil
}

func throughput(ctx context.Context, cfg Config, q *store.Redis, p *partner) (Result, error) {
	return throughputN(ctx, cfg, q, p, 1)
}

func throughputN(ctx context.Context, cfg Config, q *store.Redis, p *partner, serves int) (Result, error) {
	sched := backoff.Schedule{0}
	ns := make([]notifier.Notice, cfg.Throughput)
	schedules := make(map[string]backoff.Schedule, len(ns))
	b := body(cfg.Body)
	for i := range ns {
		id := fmt.Sprintf("tp-%08d", i)
		ns[i] = notifier.Notice{ID: id, URL: p.url, Body: b, Schedule: sched}
		schedules[id] = sched
	}
	p.reset(schedules)
	_, single := cfg.Redis.(*redis.Client)
	var before int64
	var err error
	if single {
		if before, err = usedMemory(ctx, cfg.Redis); err != nil {
			return Result{}, err
		}
	}
	_, stop, err := dispatchers(cfg, q, "throughput", true, serves)
	if err != nil {
		return Result{}, err
	}
	start := time.Now()
	for i := 0; i < len(ns); i += 1000 {
		chunk := ns[i:min(i+1000, len(ns))]
		for j := range chunk {
			chunk[j].Stamp = time.Now().Truncate(time.Millisecond)
		}
		if err := enqueueAll(ctx, q, chunk); err != nil {
			return Result{}, err
		}
	}
	enqueued := time.Since(start)
	waitArrivals(ctx, p, len(ns), 5*time.Minute)
	took := time.Unix(0, p.last.Load()).Sub(start)
	if err := stop(); err != nil {
		return Result{}, err
	}
	r := summarize(p, "throughput", 0, true, len(ns))
	r.NoticesPerSec = float64(p.arrived.Load()) / took.Seconds()
	r.EnqueuePerSec = float64(len(ns)) / enqueued.Seconds()
	if single {
		// What delivered notices leave behind: their ids in the dedup sets,
		// once their enqueue receipts have expired.
		after, err := afterReceipts(ctx, cfg.Redis, q.Keys())
		if err != nil {
			return Result{}, err
		}
		r.BytesPerTombstone = float64(after-before) / float64(len(ns))
	}
	return r, nil
}

func lateness(ctx context.Context, cfg Config, q *store.Redis, p *partner, backlog int, waker bool) (Result, error) {
	return latenessN(ctx, cfg, q, p, backlog, waker, 1)
}

func latenessN(ctx context.Context, cfg Config, q *store.Redis, p *partner, backlog int, waker bool, serves int) (Result, error) {
	ns := make([]notifier.Notice, cfg.Due)
	schedules := make(map[string]backoff.Schedule, len(ns))
	b := body(cfg.Body)
	name := fmt.Sprintf("late-%d-%v", backlog, waker)
	stamp := time.Now().Truncate(time.Millisecond)
	for i := range ns {
		// Each notice's only attempt comes due 1 s + i*Window/Due after
		// the stamp: a scheduled wake-up, exactly like a retry.
		off := time.Second + time.Duration(int64(cfg.Window)*int64(i)/int64(cfg.Due)).Truncate(time.Millisecond)
		id := fmt.Sprintf("%s-%08d", name, i)
		s := backoff.Schedule{off}
		ns[i] = notifier.Notice{ID: id, URL: p.url, Body: b, Schedule: s, Stamp: stamp}
		schedules[id] = s
	}
	p.reset(schedules)
	_, stop, err := dispatchers(cfg, q, name, waker, serves)
	if err != nil {
		return Result{}, err
	}
	for i := 0; i < len(ns); i += 1000 {
		if err := enqueueAll(ctx, q, ns[i:min(i+1000, len(ns))]); err != nil {
			return Result{}, err
		}
	}
	waitArrivals(ctx, p, len(ns), cfg.Window+90*time.Second)
	if err := stop(); err != nil {
		return Result{}, err
	}
	return summarize(p, "lateness", backlog, waker, len(ns)), nil
}
