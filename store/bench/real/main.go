// Command real is `make bench`: it measures notifier on the real path, the
// way users run it. It starts `notifier serve` as its own process on its
// default configuration (the embedded Redis with its production settings,
// or --redis), a partner as another process (this program run again as
// `real partner`) that answers at once, and enqueues through
// `notifier enqueue --file`. It prints one JSON line (a Result) per
// scenario: throughput, enqueue rate and memory per pending notice as the
// backlog grows, and retry lateness at each backlog with the waker on and
// off; each with the CPU time per notice of every process, read from
// /proc/<pid>/stat.
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
	fs.StringVar(&c.peer, "peer", "", "run the peer comparison with the asynq program at this path instead")
	fs.IntVar(&c.rounds, "rounds", atoi(envOr("BENCH_ROUNDS", "2")), "peer comparison: rounds of notifier then asynq (BENCH_ROUNDS)")
	fs.IntVar(&c.concurrency, "concurrency", 512, "peer comparison: asynq's worker count (serve's default --concurrency)")
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
	if len(os.Args) > 1 && os.Args[1] == "partner" {
		if err := runPartner(); err != nil {
			fmt.Fprintln(os.Stderr, "partner:", err)
			os.Exit(1)
		}
		return
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
	prefix := fmt.Sprintf("bench%d", time.Now().UnixNano()%1_000_000)
	if r.serve, err = startServe(ctx, cfg.bin, tmp+"/data", cfg.redisURL, prefix, false); err != nil {
		p.stop()
		os.RemoveAll(tmp)
		return nil, nil, err
	}
	return r, func() {
		if cfg.redisURL != "" {
			// A Redis of the user's: delete what the run stored.
			_ = r.serve.unlink(context.WithoutCancel(ctx), r.serve.keys.Pattern())
		}
		r.serve.stop()
		p.stop()
		os.RemoveAll(tmp)
	}, nil
}

// restart restarts serve with the waker on or off, on the same data. A
// serve that exits while starting is started again, twice at most: its
// embedded Redis must load the whole backlog from the AOF first, and serve
// gives up on a Redis that takes more than 15 s, which a million pending
// notices can on a loaded machine.
func (r *run) restart(ctx context.Context, waker bool, log *slog.Logger) error {
	r.serve.stop()
	var err error
	for try := 1; try <= 3; try++ {
		var s *serveProc
		if s, err = startServe(ctx, r.cfg.bin, r.serve.dir, r.cfg.redisURL, r.serve.keys.Prefix, !waker); err == nil {
			r.serve = s
			return nil
		}
		log.Warn("serve did not start", "try", try, "err", err)
	}
	return err
}

func (r *run) version(ctx context.Context) string {
	info, _ := r.serve.rdb.Info(ctx, "server").Result()
	return infoField(info, "redis_version")
}

// runReal runs the scenarios of `make bench`: throughput, then for each
// count of pending notices the backlog's enqueue and lateness with the
// waker on and off (in whichever order saves a restart of serve).
func runReal(ctx context.Context, cfg config, log *slog.Logger) error {
	r, cleanup, err := setup(ctx, cfg)
	if err != nil {
		return err
	}
	defer cleanup()
	version := r.version(ctx)
	if cfg.throughput > 0 {
		log.Info("throughput", "notices", cfg.throughput)
		res, err := r.throughput(ctx, cfg.throughput)
		if err != nil {
			return fmt.Errorf("throughput: %w", err)
		}
		emit(res, version)
	}
	loaded := 0
	for _, p := range cfg.pending {
		if p > loaded {
			log.Info("enqueue backlog", "notices", p-loaded)
			res, err := r.loadBacklog(ctx, loaded, p-loaded)
			if err != nil {
				return fmt.Errorf("backlog: %w", err)
			}
			emit(res, version)
			loaded = p
		}
		waker := !r.serve.noWake
		for _, w := range []bool{waker, !waker} {
			if w != !r.serve.noWake {
				log.Info("restarting serve", "waker", w)
				if err := r.restart(ctx, w, log); err != nil {
					return err
				}
			}
			log.Info("lateness", "pending", loaded, "waker", w, "retries", cfg.due)
			res, err := r.lateness(ctx, loaded)
			if err != nil {
				return fmt.Errorf("lateness (pending %d, waker %v): %w", loaded, w, err)
			}
			emit(res, version)
		}
	}
	return nil
}
