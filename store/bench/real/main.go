// Command real is `make bench`: it measures notifier on the real path, the
// way users run it. It starts `notifier serve` as its own process on its
// default configuration (the embedded Redis with its production settings,
// or --redis), a partner as another process (this program run again as
// `real partner`) that answers at once, and enqueues through
// `notifier enqueue --file`. It prints one JSON line (a Result) per
// scenario: throughput and two floors under it (floor.go, enqfloor.go),
// enqueue rate and memory per pending notice as the backlog grows, and
// retry lateness at each backlog with the waker on and off; each with the
// CPU time per notice of every process, read from /proc/<pid>/stat.
//
// With --peer it runs the peer comparison instead (peer.go): notifier's
// throughput scenario and the asynq program at that path, interleaved.
//
// Everything it starts listens on loopback or a unix socket, and every
// notice it enqueues is addressed to its partner on 127.0.0.1.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// config is the run's settings: flags, each defaulting to an environment
// variable so that `make bench BENCH_PENDING=0` works.
type config struct {
	bin, redisURL string
	throughput    int
	due           int
	rate          float64
	pending       []int
	body          int
	peer          string
	rounds        int
	concurrency   int
	rewrite       bool
	wakerOff      bool
	floors        bool
	// serveEnv is NAME=VALUE settings added to serve's environment only
	// (GOGC=100, say), not to the partner's or the CLI's.
	serveEnv []string
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func parseConfig(args []string) (config, error) {
	fs := flag.NewFlagSet("real", flag.ContinueOnError)
	var c config
	var pending string
	fs.StringVar(&c.bin, "bin", envOr("BENCH_BIN", "bin/notifier"), "the notifier binary to run (BENCH_BIN)")
	fs.StringVar(&c.redisURL, "redis", envOr("BENCH_REDIS", ""), "Redis for serve (BENCH_REDIS; default: serve's embedded Redis); the run uses a key prefix of its own there and deletes its keys")
	fs.IntVar(&c.throughput, "throughput", atoi(envOr("BENCH_THROUGHPUT", "20000")), "notices due at once in the throughput scenario, 0 to skip (BENCH_THROUGHPUT)")
	fs.IntVar(&c.due, "due", atoi(envOr("BENCH_DUE", "10000")), "retries coming due in each lateness scenario (BENCH_DUE)")
	fs.Float64Var(&c.rate, "rate", atof(envOr("BENCH_RATE", "1000")), "retries coming due per second (BENCH_RATE)")
	fs.StringVar(&pending, "pending", envOr("BENCH_PENDING", "0,100000,1000000"), "pending notices to measure lateness with, comma-separated, empty to skip (BENCH_PENDING)")
	fs.IntVar(&c.body, "body", atoi(envOr("BENCH_BODY", "200")), "body size in bytes (BENCH_BODY)")
	fs.BoolVar(&c.rewrite, "aof-rewrite", envOr("BENCH_AOF_REWRITE", "1") != "0", "with a backlog and the waker on, also measure lateness while Redis rewrites its AOF (BENCH_AOF_REWRITE=0 to skip)")
	fs.BoolVar(&c.wakerOff, "waker-off", envOr("BENCH_WAKER_OFF", "1") != "0", "also measure the backlogs and lateness with --no-wake (BENCH_WAKER_OFF=0 to skip)")
	fs.BoolVar(&c.floors, "floors", envOr("BENCH_FLOORS", "1") != "0", "after throughput, measure two floors under it with as many notices: http-floor (serve's sender and the partner, nothing else) and enqueue-floor (Redis running the enqueue's commands without Lua) (BENCH_FLOORS=0 to skip)")
	fs.StringVar(&c.peer, "peer", "", "run the peer comparison with the asynq program at this path instead")
	fs.IntVar(&c.rounds, "rounds", atoi(envOr("BENCH_ROUNDS", "2")), "peer comparison: rounds of notifier then asynq (BENCH_ROUNDS)")
	fs.IntVar(&c.concurrency, "concurrency", 512, "peer comparison: asynq's worker count (serve's default --concurrency)")
	fs.Func("serve-env", "NAME=VALUE added to serve's environment only, such as GOGC=100 (repeatable)", func(v string) error {
		if name, _, ok := strings.Cut(v, "="); !ok || name == "" {
			return fmt.Errorf("want NAME=VALUE, got %q", v)
		}
		c.serveEnv = append(c.serveEnv, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, f := range strings.Split(pending, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return c, fmt.Errorf("pending %q: want comma-separated counts", pending)
		}
		c.pending = append(c.pending, n)
	}
	if c.throughput < 0 || c.due < 1 || c.rate <= 0 || c.body < 32 || c.body > 1<<20 || c.rounds < 1 || c.concurrency < 1 {
		return c, errors.New("throughput must be 0 or more, due, rate, rounds and concurrency positive, body 32 bytes to 1 MiB")
	}
	if c.peer != "" && c.throughput == 0 {
		return c, errors.New("the peer comparison needs a throughput above 0")
	}
	return c, nil
}

// atoi and atof read an environment default; a bad one becomes -1, which
// parseConfig refuses.
func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

func atof(s string) float64 {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return -1
	}
	return f
}

func main() {
	if isPartner() {
		os.Exit(partnerMain())
	}
	cfg, err := parseConfig(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	// go-redis logs each refused dial while serve's Redis loads its AOF
	// after a restart; startServe's wait reports a Redis that never comes.
	redis.SetLogger(quiet{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if cfg.peer != "" {
		err = runPeer(ctx, cfg, log)
	} else {
		err = runReal(ctx, cfg, log)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// quiet discards go-redis's log lines.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// emit prints r as one JSON line, with the machine's cores and the Redis
// version filled in.
func emit(r Result, version string) {
	if r.Tool == "" {
		r.Tool = "notifier"
	}
	r.Path, r.Cores, r.Redis = "real", runtime.NumCPU(), version
	b, _ := json.Marshal(r)
	fmt.Printf("%s\n", b)
}

// setup starts the partner and serve in a fresh temporary directory.
func setup(ctx context.Context, cfg config) (*run, func(), error) {
	tmp, err := os.MkdirTemp("", "nbench")
	if err != nil {
		return nil, nil, err
	}
	p, err := startPartner()
	if err != nil {
		os.RemoveAll(tmp)
		return nil, nil, err
	}
	r := &run{cfg: cfg, partner: p, tmp: tmp}
	if r.serve, err = r.startServe(ctx, true); err != nil {
		p.stop()
		os.RemoveAll(tmp)
		return nil, nil, err
	}
	return r, func() {
		r.dropServe(context.WithoutCancel(ctx))
		p.stop()
		os.RemoveAll(tmp)
	}, nil
}

// startServe starts a serve on data of its own: a new data directory, and
// on a Redis named with --redis a new key prefix.
func (r *run) startServe(ctx context.Context, waker bool) (*serveProc, error) {
	r.serves++
	dir := filepath.Join(r.tmp, fmt.Sprintf("data-%d", r.serves))
	prefix := fmt.Sprintf("bench%d-%d", time.Now().UnixNano()%1_000_000, r.serves)
	return startServe(ctx, r.cfg.bin, dir, r.cfg.redisURL, prefix, !waker, r.cfg.serveEnv)
}

// dropServe stops serve and deletes what it stored.
func (r *run) dropServe(ctx context.Context) {
	if r.cfg.redisURL != "" {
		// A Redis of the user's: delete what the run stored.
		_ = r.serve.unlink(ctx, r.serve.keys.Pattern())
	}
	r.serve.stop()
	_ = os.RemoveAll(r.serve.dir)
}

func (r *run) version(ctx context.Context) string {
	info, _ := r.serve.rdb.Info(ctx, "server").Result()
	return infoField(info, "redis_version")
}

// runReal runs the scenarios of `make bench`: with the waker on,
// throughput and its floors (http-floor, enqueue-floor), then for each
// count of pending notices the backlog's enqueue and lateness; then with
// the waker off (--no-wake), the backlogs and lateness again, on a new serve with data of its own. A new serve rather
// than a restart: a restarted serve's embedded Redis must first load the
// whole backlog from its AOF, and serve gives up on a Redis that has not
// answered within 15 s, which a million pending notices (540 MB) took on
// this machine under load. The second run of the backlogs also shows how
// much their figures vary.
func runReal(ctx context.Context, cfg config, log *slog.Logger) error {
	r, cleanup, err := setup(ctx, cfg)
	if err != nil {
		return err
	}
	defer cleanup()
	version := r.version(ctx)
	for _, waker := range []bool{true, false} {
		if !waker {
			if len(cfg.pending) == 0 || !cfg.wakerOff {
				return nil
			}
			log.Info("a new serve", "waker", waker)
			r.dropServe(ctx)
			if r.serve, err = r.startServe(ctx, waker); err != nil {
				return err
			}
		}
		if waker && cfg.throughput > 0 {
			log.Info("throughput", "notices", cfg.throughput)
			res, err := r.throughput(ctx, cfg.throughput)
			if err != nil {
				return fmt.Errorf("throughput: %w", err)
			}
			emit(res, version)
			if cfg.floors {
				log.Info("floors", "notices", cfg.throughput)
				res, err := r.httpFloor(ctx, cfg.throughput)
				if err != nil {
					return fmt.Errorf("http-floor: %w", err)
				}
				emit(res, version)
				if res, err = r.enqueueFloor(ctx, cfg.throughput); err != nil {
					return fmt.Errorf("enqueue-floor: %w", err)
				}
				emit(res, version)
			}
		}
		loaded := 0
		for _, p := range cfg.pending {
			if p > loaded {
				log.Info("enqueue backlog", "notices", p-loaded, "waker", waker)
				res, err := r.loadBacklog(ctx, loaded, p-loaded)
				if err != nil {
					return fmt.Errorf("backlog: %w", err)
				}
				emit(res, version)
				loaded = p
			}
			rewrites := []bool{false}
			if waker && loaded > 0 && cfg.rewrite {
				rewrites = append(rewrites, true) // lateness-aof-rewrite too
			}
			for _, rewrite := range rewrites {
				log.Info("lateness", "pending", loaded, "waker", waker, "aof_rewrite", rewrite, "retries", cfg.due)
				res, err := r.lateness(ctx, loaded, rewrite)
				if err != nil {
					return fmt.Errorf("lateness (pending %d, waker %v, AOF rewrite %v): %w", loaded, waker, rewrite, err)
				}
				emit(res, version)
			}
		}
	}
	return nil
}
