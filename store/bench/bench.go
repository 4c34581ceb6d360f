package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/store"
	"github.com/redis/go-redis/v9"
)

// Config describes a run.
type Config struct {
	// Redis is where the benchmark runs. It uses its own key prefix and
	// deletes its keys afterwards; it never flushes.
	Redis redis.UniversalClient
	// Cluster runs the cluster scenarios instead (Redis must be a Redis
	// Cluster client): throughput and lateness with each count of serve
	// instances in Serves.
	Cluster bool
	Serves  []int
	// Backlogs lists the numbers of other pending notices (due in an hour)
	// to measure lateness with.
	Backlogs []int
	// Due is how many notices come due during each lateness scenario,
	// spread over Window.
	Due    int
	Window time.Duration
	// Throughput is how many notices due at once the throughput scenario
	// delivers.
	Throughput int
	// File is how many JSON lines the enqueue-file scenario enqueues
	// through the code path of `notifier enqueue --file`.
	File int
	// Body is the size of each notice's body.
	Body int
	// Concurrency is the dispatcher's worker count.
	Concurrency int
	// Dir holds the scenario's SQLite attempt logs.
	Dir string
	// Log receives progress messages.
	Log *slog.Logger
}

// Result is one JSON line of output.
type Result struct {
	Scenario string `json:"scenario"`
	// Path is "in-process": the dispatcher runs inside the benchmark, not
	// as serve (make bench measures the real path; see store/bench/real).
	Path string `json:"path"`
	// Serves is the number of dispatchers (serve instances) in a cluster
	// scenario.
	Serves  int  `json:"serves,omitempty"`
	Waker   bool `json:"waker"`
	Backlog int  `json:"backlog"`
	Notices int  `json:"notices"`
	// Delivered counts notices that reached the partner in time to count.
	Delivered int     `json:"delivered"`
	P50MS     float64 `json:"p50_ms,omitempty"`
	P90MS     float64 `json:"p90_ms,omitempty"`
	P99MS     float64 `json:"p99_ms,omitempty"`
	MaxMS     float64 `json:"max_ms,omitempty"`
	// NoticesPerSec is end-to-end delivery throughput, every attempt
	// logged to SQLite.
	NoticesPerSec float64 `json:"notices_per_sec,omitempty"`
	// EnqueuePerSec is the rate of pipelined enqueues into Redis.
	EnqueuePerSec float64 `json:"enqueue_per_sec,omitempty"`
	// BytesPerPending is Redis memory per pending notice beyond its body.
	BytesPerPending float64 `json:"bytes_per_pending,omitempty"`
	// BytesPerTrigger is what the trigger key alone costs, part of
	// BytesPerPending: the same number of bare keys of the contract's shape
	// noticeId_<id>_<stamp>_<n> with a TTL, measured in a database of
	// their own. The rest is the payload and the due-index entry.
	BytesPerTrigger float64 `json:"bytes_per_trigger,omitempty"`
	// BytesPerReceipt is what each enqueue's receipt costs for the minute
	// it lives, on top of BytesPerPending (which is measured once the
	// receipts are gone).
	BytesPerReceipt float64 `json:"bytes_per_receipt,omitempty"`
	// BytesPerTombstone is Redis memory per delivered notice left for the
	// dedup window (the throughput scenario's, once all are delivered): the
	// compact memory of delivered ids, no longer a tombstone key, but the
	// name stays as the README and earlier runs report it.
	BytesPerTombstone float64 `json:"bytes_per_tombstone,omitempty"`
	Cores             int     `json:"cores"`
	Redis             string  `json:"redis_version"`
}

// Run runs every scenario and writes one JSON line per scenario to out.
func Run(ctx context.Context, cfg Config, out io.Writer) error {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	p, err := newPartner()
	if err != nil {
		return fmt.Errorf("bench partner: %w", err)
	}
	defer p.srv.Close()
	info, _ := cfg.Redis.Info(ctx, "server").Result()
	version := infoField(info, "redis_version")
	emit := func(r Result) error {
		r.Path, r.Cores, r.Redis = "in-process", runtime.NumCPU(), version
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(out, "%s\n", b)
		return err
	}
	prefix := fmt.Sprintf("bench%d", time.Now().UnixNano()%1_000_000)
	q := store.NewRedis(cfg.Redis, prefix, nil)
	defer cleanup(context.WithoutCancel(ctx), cfg.Redis, q.Keys())

	if cfg.Cluster {
		for _, n := range cfg.Serves {
			cfg.Log.Info("cluster throughput", "serves", n)
			r, err := throughputN(ctx, cfg, q, p, n)
			if err != nil {
				return err
			}
			r.Scenario, r.Serves = "cluster-throughput", n
			if err := emit(r); err != nil {
				return err
			}
			cleanup(ctx, cfg.Redis, q.Keys())
			cfg.Log.Info("cluster lateness", "serves", n)
			if r, err = latenessN(ctx, cfg, q, p, 0, true, n); err != nil {
				return err
			}
			r.Scenario, r.Serves = "cluster-lateness", n
			if err := emit(r); err != nil {
				return err
			}
			cleanup(ctx, cfg.Redis, q.Keys())
		}
		return nil
	}

	// Throughput: notices due now, as fast as they go.
	if cfg.Throughput > 0 {
		r, err := throughput(ctx, cfg, q, p)
		if err != nil {
			return err
		}
		if err := emit(r); err != nil {
			return err
		}
	}
	if cfg.File > 0 {
		r, err := enqueueFile(ctx, cfg, q)
		if err != nil {
			return err
		}
		if err := emit(r); err != nil {
			return err
		}
		cleanup(ctx, cfg.Redis, q.Keys())
	}
	loaded := 0
	for _, backlog := range cfg.Backlogs {
		if backlog > loaded {
			cfg.Log.Info("loading backlog", "notices", backlog-loaded)
			r, err := load(ctx, cfg, q, loaded, backlog-loaded)
			if err != nil {
				return err
			}
			r.Backlog = backlog
			if err := emit(r); err != nil {
				return err
			}
			loaded = backlog
		}
		for _, waker := range []bool{true, false} {
			cfg.Log.Info("lateness", "backlog", backlog, "waker", waker)
			r, err := lateness(ctx, cfg, q, p, backlog, waker)
			if err != nil {
				return err
			}
			if err := emit(r); err != nil {
				return err
			}
		}
	}
	return nil
}

func body(n int) []byte { return []byte(strings.Repeat("x", n)) }

// enqueueAll enqueues ns and fails on the first notice refused: a scenario
// whose notices were not stored would measure nothing.
func enqueueAll(ctx context.Context, q *store.Redis, ns []notifier.Notice) error {
	errs, err := q.Enqueue(ctx, ns)
	if err != nil {
		return err
	}
	for _, e := range errs {
		if e != nil {
			return fmt.Errorf("bench enqueue: %w", e)
		}
	}
	return nil
}

func joinErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
