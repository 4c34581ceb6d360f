// Package bench measures notifier end to end on a real Redis: how late
// attempts arrive at a partner (with and without the waker, with a backlog
// of pending notices), how many notices per second it delivers, how fast
// it enqueues, and how much Redis memory a pending notice costs. It backs
// `notifier bench` and `make bench`; it asserts nothing.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/notifier/notifier/backoff"
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
	// BytesPerTombstone is Redis memory per delivered notice left for the
	// dedup window (the throughput scenario's, once all are delivered).
	BytesPerTombstone float64 `json:"bytes_per_tombstone,omitempty"`
	Cores             int     `json:"cores"`
	Redis             string  `json:"redis_version"`
}

// partner answers 200 at once and records, per notice, how late each
// arrival was against stamp + S[n-1].
type partner struct {
	srv      *http.Server
	url      string
	mu       sync.Mutex
	schedule map[string]backoff.Schedule
	late     []time.Duration
	arrived  atomic.Int64
	last     atomic.Int64 // Unix ns of the latest arrival
}

func newPartner() (*partner, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &partner{url: "http://" + ln.Addr().String() + "/notify", schedule: map[string]backoff.Schedule{}}
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ReadHeaderTimeout: 5 * time.Second}
	go p.srv.Serve(ln)
	return p, nil
}

func (p *partner) serve(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	_, _ = io.Copy(io.Discard, r.Body)
	stamp, _ := strconv.ParseInt(r.Header.Get("Notice-Stamp"), 10, 64)
	n, _ := strconv.Atoi(r.Header.Get("Notice-Attempt"))
	p.mu.Lock()
	if s, ok := p.schedule[r.Header.Get("Webhook-Id")]; ok {
		if due, ok := s.Due(time.UnixMilli(stamp), n); ok {
			p.late = append(p.late, now.Sub(due))
		}
	}
	p.mu.Unlock()
	p.arrived.Add(1)
	p.last.Store(now.UnixNano())
}

func (p *partner) reset(schedules map[string]backoff.Schedule) {
	p.mu.Lock()
	p.schedule, p.late = schedules, nil
	p.mu.Unlock()
	p.arrived.Store(0)
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
		r.Cores, r.Redis = runtime.NumCPU(), version
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

// load enqueues count backlog notices due in an hour and measures the
// enqueue rate and the memory each costs.
func load(ctx context.Context, cfg Config, q *store.Redis, from, count int) (Result, error) {
	before, err := usedMemory(ctx, cfg.Redis)
	if err != nil {
		return Result{}, err
	}
	sched, _ := backoff.Parse("1h")
	b := body(cfg.Body)
	start := time.Now()
	batch := make([]notifier.Notice, 0, 1000)
	for i := from; i < from+count; i++ {
		batch = append(batch, notifier.Notice{ID: fmt.Sprintf("backlog-%08d", i), URL: "http://127.0.0.1:1/never", Body: b, Schedule: sched, Stamp: time.Now().Truncate(time.Millisecond)})
		if len(batch) == cap(batch) || i == from+count-1 {
			if err := enqueueAll(ctx, q, batch); err != nil {
				return Result{}, err
			}
			batch = batch[:0]
		}
	}
	took := time.Since(start)
	after, err := usedMemory(ctx, cfg.Redis)
	if err != nil {
		return Result{}, err
	}
	trig, err := triggerCost(ctx, cfg, q.Keys(), from, count)
	if err != nil {
		return Result{}, err
	}
	return Result{Scenario: "enqueue-backlog", Notices: count, EnqueuePerSec: float64(count) / took.Seconds(),
		BytesPerPending: float64(after-before)/float64(count) - float64(len(b)), BytesPerTrigger: trig}, nil
}

// triggerCost measures what count bare trigger keys (the integer 1, PX an
// hour, named as load names its notices' first triggers) cost, in database
// 15 so that its key tables grow from empty as the backlog's did. It
// deletes what it wrote, and only that.
func triggerCost(ctx context.Context, cfg Config, keys store.Keys, from, count int) (float64, error) {
	single, ok := cfg.Redis.(*redis.Client)
	if !ok {
		return 0, nil
	}
	opts := *single.Options()
	opts.DB = 15
	rdb := redis.NewClient(&opts)
	defer rdb.Close()
	scratch := store.Keys{Prefix: keys.Prefix + "t"}
	defer cleanup(context.WithoutCancel(ctx), rdb, scratch)
	before, err := usedMemory(ctx, rdb)
	if err != nil {
		return 0, err
	}
	stamp := time.Now().Truncate(time.Millisecond)
	pipe := rdb.Pipeline()
	for i := from; i < from+count; i++ {
		// The same length as the backlog's keys: the prefix only gains "t".
		pipe.Set(ctx, scratch.Trigger(notifier.Trigger{ID: fmt.Sprintf("backlog-%08d", i), Stamp: stamp, N: 1}), 1, time.Hour)
		if pipe.Len() == 1000 || i == from+count-1 {
			if _, err := pipe.Exec(ctx); err != nil {
				return 0, fmt.Errorf("bare trigger keys: %w", err)
			}
		}
	}
	after, err := usedMemory(ctx, rdb)
	if err != nil {
		return 0, err
	}
	return float64(after-before) / float64(count), nil
}

// enqueueFile times notifier.EnqueueLines, the code behind `enqueue
// --file`, on cfg.File lines with cfg.Body-byte bodies due in an hour.
func enqueueFile(ctx context.Context, cfg Config, q *store.Redis) (Result, error) {
	var b strings.Builder
	body, _ := json.Marshal(string(body(cfg.Body)))
	for i := range cfg.File {
		fmt.Fprintf(&b, `{"id":"file-%08d","url":"http://127.0.0.1:1/never","body":%s,"schedule":"1h"}`+"\n", i, body)
	}
	input := b.String()
	start := time.Now()
	n, err := notifier.EnqueueLines(ctx, strings.NewReader(input), q, backoff.Default, time.Now, func(*notifier.LineError) {})
	if err != nil {
		return Result{}, err
	}
	return Result{Scenario: "enqueue-file", Notices: n, EnqueuePerSec: float64(n) / time.Since(start).Seconds()}, nil
}

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
		// What delivered notices leave behind: their dedup tombstones.
		after, err := usedMemory(ctx, cfg.Redis)
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

func waitArrivals(ctx context.Context, p *partner, n int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for p.arrived.Load() < int64(n) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
}

func summarize(p *partner, scenario string, backlog int, waker bool, notices int) Result {
	p.mu.Lock()
	late := slices.Clone(p.late)
	p.mu.Unlock()
	slices.Sort(late)
	r := Result{Scenario: scenario, Waker: waker, Backlog: backlog, Notices: notices, Delivered: len(late)}
	if len(late) > 0 {
		pct := func(q float64) float64 {
			return float64(late[min(int(q*float64(len(late))), len(late)-1)]) / 1e6
		}
		r.P50MS, r.P90MS, r.P99MS, r.MaxMS = pct(0.50), pct(0.90), pct(0.99), float64(late[len(late)-1])/1e6
	}
	return r
}

func usedMemory(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, fmt.Errorf("redis INFO memory: %w", err)
	}
	return strconv.ParseInt(infoField(info, "used_memory"), 10, 64)
}

func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// cleanup deletes the benchmark's keys, and only those (on every master of
// a cluster).
func cleanup(ctx context.Context, rdb redis.UniversalClient, k store.Keys) {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		_ = cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			cleanup(ctx, m, k)
			return nil
		})
		return
	}
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, k.Pattern(), 10000).Result()
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench cleanup:", err)
			return
		}
		if len(keys) > 0 {
			// One key per command: a cluster node refuses multi-key
			// commands across slots.
			pipe := rdb.Pipeline()
			for _, k := range keys {
				pipe.Unlink(ctx, k)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				fmt.Fprintln(os.Stderr, "bench cleanup:", err)
				return
			}
		}
		if cursor = next; cursor == 0 {
			return
		}
	}
}
