// Command notifier delivers webhook notices and retries them on a fixed
// schedule anchored to when each was first enqueued. This file only wires:
// it builds the adapters of package store, hands them to the command line
// (package notifier/cli) as constructors, and composes `notifier serve` from
// its parts, started in one order and stopped in the reverse.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // served only when NOTIFIER_PPROF names an address
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/notifier/api"
	"github.com/notifier/notifier/notifier/cli"
	"github.com/notifier/notifier/notifier/console"
	"github.com/notifier/notifier/notifier/tracing"
	"github.com/notifier/notifier/store"
	"github.com/notifier/notifier/store/bench"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
)

// serveGCPercent is serve's GOGC when the environment sets none. serve
// allocates per delivery (requests, replies, log rows) and keeps little, so
// letting the heap grow twice as far past what is live between collections
// (they come about half as often) costs a few tens of MB.
const serveGCPercent = 200

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signalContext()
	code := run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// signalContext is cancelled by the first SIGINT or SIGTERM (graceful
// shutdown); a second one exits at once.
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		if _, ok := <-ch; !ok {
			return
		}
		cancel()
		if _, ok := <-ch; ok {
			fmt.Fprintln(os.Stderr, "notifier: second signal, exiting now")
			os.Exit(130)
		}
	}()
	return ctx, func() { signal.Stop(ch); close(ch); cancel() }
}

// run runs the CLI with args and returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	// Commands other than serve report Redis failures as their error.
	redis.SetLogger(redisLog{slog.New(slog.DiscardHandler)})
	shutdown, err := tracing.Setup(ctx, version)
	if err != nil {
		fmt.Fprintf(stderr, "notifier: %v\n", err)
		return 2
	}
	code := cli.Run(ctx, env, args, stdin, stdout, stderr)
	// Spans not yet exported are flushed, for at most a few seconds: a
	// collector that is down must not hold the command up.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := shutdown(sctx); err != nil {
		fmt.Fprintf(stderr, "notifier: export traces: %v\n", err)
	}
	return code
}

// env is what the command line reaches Redis, the attempt log and the
// service through.
var env = cli.Env{
	Version: version, Prefix: store.DefaultPrefix, DedupWindow: store.DefaultDedupWindow,
	FleetLogMax: store.DefaultFleetLogMax, MinTokenLen: api.MinTokenLen,
	Serve: serve,
	Open: func(ctx context.Context, t cli.Target) (cli.Store, error) {
		rdb, err := connect(ctx, t, 0)
		if err != nil {
			return nil, err
		}
		return redisStore{store.NewRedis(rdb, t.Prefix, nil), rdb}, nil
	},
	History: func(path string) (cli.Log, error) { return store.OpenSQLiteReadOnly(path) },
	Bench: func(ctx context.Context, c cli.BenchConfig) error {
		err := bench.RunOn(ctx, c.RedisURL, c.ClusterURL, bench.Config{Serves: c.Serves, Backlogs: c.Backlogs, Due: c.Due,
			Window: c.Window, Throughput: c.Throughput, File: c.File, Body: c.Body, Concurrency: c.Concurrency, Log: c.Log}, c.Out)
		if errors.Is(err, store.ErrBadRedisURL) {
			flag := map[bool]string{true: "--cluster", false: "--redis"}[c.ClusterURL != ""]
			return fmt.Errorf("%w: %s: %v", cli.ErrBadInput, flag, err)
		}
		return err
	},
}

// redisStore is a store.Redis that owns its connection.
type redisStore struct {
	*store.Redis
	rdb redis.UniversalClient
}

func (s redisStore) Close() error { return s.rdb.Close() }

// connect opens the Redis t names, or the private one of the serve using
// t.DataDir, with at most poolSize connections (0: the default), and checks
// that it answers.
func connect(ctx context.Context, t cli.Target, poolSize int) (redis.UniversalClient, error) {
	if t.Prefix != "" {
		if err := store.ValidatePrefix(t.Prefix); err != nil {
			return nil, fmt.Errorf("%w: --prefix: %v", cli.ErrBadInput, err)
		}
	}
	rdb, err := store.ConnectTo(ctx, t.URL, t.DataDir, poolSize)
	if errors.Is(err, store.ErrBadRedisURL) {
		return nil, fmt.Errorf("%w: --redis: %v", cli.ErrBadInput, err)
	}
	return rdb, err
}

// redisLog sends go-redis's own messages (dial failures, dropped pubsub
// messages) to slog at warn, instead of the standard logger.
type redisLog struct{ log *slog.Logger }

func (r redisLog) Printf(_ context.Context, format string, v ...any) {
	r.log.Warn("go-redis: " + fmt.Sprintf(format, v...))
}

// serve builds the service from package store and runs it. Its parts
// start in the order they are listed and stop in reverse (see
// notifier.RunInOrder): Redis outlives everything that writes to it, and
// the attempt log, the alerter and the fleet log outlive the dispatcher, so
// attempts that finish during shutdown are still recorded. Any part that
// fails stops serve: a log that cannot be written, say, since delivering
// without a record of it is not an option.
func serve(ctx context.Context, cfg cli.ServeConfig) error {
	log := cfg.Logger
	redis.SetLogger(redisLog{log})
	syscall.Umask(0o077) // everything serve creates (socket, AOF, log) is private
	if _, set := os.LookupEnv("GOGC"); !set {
		// serve's CPU per delivered notice, in partners' worth, went
		// from 2.64 to 2.54 (bench-real --throughput 40000 with and
		// without --serve-env GOGC=100, three interleaved pairs), for
		// about 15 MB more peak RSS in that 40,000-notice burst.
		// GOGC, when set, decides instead.
		debug.SetGCPercent(serveGCPercent)
	}
	// Certificates and proxies first: a bad one stops serve before it
	// starts anything or publishes its settings.
	eg, err := notifier.NewEgress(ctx, notifier.EgressOptions{Timeout: cfg.Dispatcher.Timeout, MaxIdlePerHost: cfg.Dispatcher.Concurrency,
		Guard: cfg.Guard, Proxy: cfg.EgressProxy, Partners: cfg.Config.Partners, Logger: log})
	if err != nil {
		return fmt.Errorf("%w: %v", cli.ErrBadInput, err)
	}
	var parts []notifier.Part
	var cleanup []func()
	defer func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
	}()
	if cfg.Redis.URL == "" {
		unlock, err := store.LockDir(cfg.Redis.DataDir)
		if err != nil {
			return err
		}
		cleanup = append(cleanup, unlock)
		srv, err := store.StartServer(ctx, store.ServerConfig{Dir: cfg.Redis.DataDir, AppendFsync: cfg.AppendFsync})
		if err != nil {
			return err
		}
		// Run stops it; until Run is called, this cleanup does.
		supervised := make(chan struct{})
		cleanup = append(cleanup, func() {
			select {
			case <-supervised:
			default:
				_ = srv.Stop()
			}
		})
		parts = append(parts, notifier.Part{Name: "embedded redis-server", Run: func(ctx context.Context) error {
			close(supervised)
			if err := srv.Run(ctx, log); err != nil {
				log.Error("stop embedded redis-server", "err", err)
			}
			return nil
		}})
		log.Info("started embedded redis-server", "socket", srv.Socket, "appendfsync", cfg.AppendFsync)
	}
	rdb, err := connect(ctx, cfg.Redis, 0)
	if err != nil {
		return err
	}
	cleanup = append(cleanup, func() { rdb.Close() })
	q := store.NewRedis(rdb, cfg.Redis.Prefix, log)
	q.DedupWindow = cfg.DedupWindow
	summaries, err := cfg.Dispatcher.Partners.Summaries()
	if err != nil {
		return err
	}
	if err := q.Publish(ctx, store.Settings{Schedule: cfg.Schedule, Policy: cfg.Policy, Partners: summaries}); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(cfg.DB), 0o700); err != nil {
		return fmt.Errorf("attempt log dir: %w", err)
	}
	alog, err := store.OpenSQLiteWith(cfg.DB, store.SQLiteOptions{Retain: cfg.Retain, Logger: log})
	if err != nil {
		return err
	}
	cleanup = append(cleanup, func() { alog.Close() })
	parts = append(parts, notifier.Part{Name: "attempt log", Run: alog.Run})
	parts = append(parts, notifier.Part{Name: "certificate reload", Run: eg.Run})
	dl := notifier.NewEgressDeliverer(cfg.Dispatcher.Timeout, eg)
	dl.UserAgent = "notifier/" + cfg.Version
	d := cfg.Dispatcher
	d.Queue, d.Events, d.Log, d.Post, d.Pauser = q, q, alog, dl.PostWith, q
	if tracing.Enabled(os.Getenv) {
		d.AddObserver(notifier.AttemptSpans(tracing.Provider()))
	}
	if cfg.Config.AlertURL != "" {
		alerter := notifier.NewAlerter(cfg.Config.AlertURL, cfg.Config.AlertTimeout, cfg.Guard, log)
		d.GaveUp = alerter.Notify
		parts = append(parts, notifier.Part{Name: "give-up alerts", Run: alerter.Run})
	}
	if cfg.FleetLog {
		fl := store.NewFleetLog(q, cfg.FleetLogMax, log)
		d.AddObserver(fl.Observe)
		parts = append(parts, notifier.Part{Name: "fleet log", Run: fl.Run})
	}
	if cfg.Listen != "" { // stopped after the dispatcher: readiness and metrics last to the end
		stats := &notifier.StatsGatherer{Redis: q, Log: alog, Logger: log}
		p, err := apiPart(ctx, cfg, q, rdb, alog, d, stats.Last, eg.CertExpiries)
		if err != nil {
			return err
		}
		parts = append(parts, notifier.Part{Name: "stats", Run: stats.Run}, p)
	}
	parts = append(parts, notifier.Part{Name: "dispatcher", Run: d.Run})
	if addr := os.Getenv("NOTIFIER_PPROF"); addr != "" {
		parts = append(parts, pprofPart(addr, log))
	}
	log.Info("serving", "partners", len(cfg.Config.Partners), "redis", store.Describe(rdb), "db", cfg.DB,
		"schedule", cfg.Schedule.String(), "concurrency", d.Concurrency)
	err = notifier.RunInOrder(ctx, parts...)
	st := d.Stats()
	log.Info("stopped", "attempts", st.Attempts.Load(), "delivered", st.Delivered.Load(), "gave_up", st.GaveUp.Load(),
		"recovered_by_sweep", st.Recovered.Load(), "foreign_keys", q.ForeignKeys())
	return err
}

// adminPool is how many Redis connections serve's API and console share:
// their own, so their reads never hold the connections delivery needs.
const adminPool = 4

// apiPart serves the HTTP API and metrics, and the web console under /ui/,
// on cfg.Listen. Their reads and writes go through a store on connections
// of their own; q and rdb, delivery's, are only asked whether they work.
func apiPart(ctx context.Context, cfg cli.ServeConfig, q *store.Redis, rdb redis.UniversalClient, alog *store.SQLite,
	d *notifier.Dispatcher, stats func() (notifier.StoreStats, bool), certs func() []notifier.CertExpiry) (notifier.Part, error) {
	log := cfg.Logger
	adminRDB, err := connect(ctx, cfg.Redis, adminPool)
	if err != nil {
		return notifier.Part{}, err
	}
	admin := store.NewRedis(adminRDB, cfg.Redis.Prefix, log)
	admin.DedupWindow = q.DedupWindow
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := api.NewMetrics(reg, api.MetricsSource{
		PendingCount: func(ctx context.Context) (int64, error) { return admin.PendingCount(ctx, d.Partners.Names()) },
		Recovered:    d.Stats().Recovered.Load,
		ForeignKeys:  q.ForeignKeys,
		Stores:       stats,
	})
	d.AddObserver(m.Observe)
	reg.MustRegister(api.NewCertExpiry(certs))
	h, err := api.New(api.Server{Queue: admin, Log: alog, Token: cfg.APIToken, Metrics: m, PublicMetrics: cfg.PublicMetrics,
		Logger: log, Ready: api.Readiness{Ping: func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
			LastHeard: q.LastHeard, Sync: alog.Sync}.Check})
	if err != nil {
		adminRDB.Close()
		return notifier.Part{}, fmt.Errorf("%w: --listen: %v", cli.ErrBadInput, err)
	}
	done := make(chan struct{})
	ui, err := console.New(console.Options{Queue: admin, Log: alog, Token: cfg.APIToken, ReadToken: cfg.APIReadToken,
		Partners: d.Partners.Names, Logger: log, Done: done})
	if err != nil {
		adminRDB.Close()
		return notifier.Part{}, fmt.Errorf("%w: --listen: %v", cli.ErrBadInput, err)
	}
	// The partner portal: its own pages and API, reached by partners'
	// portal tokens only.
	portal, err := notifier.NewPortal(notifier.PortalConfig{Queue: admin, Log: alog, Partners: cfg.Config.Partners,
		Reserved: []string{cfg.APIToken, cfg.APIReadToken}, Logger: log})
	var partnerAPI, partnerUI http.Handler
	if err == nil {
		if partnerAPI, err = api.NewPartner(api.PartnerServer{Portal: portal, Logger: log}); err == nil {
			partnerUI, err = console.NewPortal(console.PortalOptions{Portal: portal, Queue: admin, Log: alog, Logger: log, Done: done})
		}
	}
	if err != nil {
		adminRDB.Close()
		return notifier.Part{}, fmt.Errorf("%w: --config: %v", cli.ErrBadInput, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ui/", ui)
	mux.Handle("/portal/", partnerUI)
	mux.Handle("/v1/partner/", partnerAPI)
	mux.Handle("/", h)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		adminRDB.Close()
		return notifier.Part{}, fmt.Errorf("--listen: %w", err)
	}
	log.Info("api listening", "addr", ln.Addr().String())
	return notifier.Part{Name: "api", Run: func(ctx context.Context) error {
		defer adminRDB.Close()
		go func() { <-ctx.Done(); close(done) }() // ends the console's live feeds
		return api.Serve(ctx, ln, mux, log)
	}}, nil
}

// pprofPart serves the profiler on addr, for operators and `make bench`
// investigations: off unless NOTIFIER_PPROF names an address. A profiler
// that cannot listen is logged, and serve goes on.
func pprofPart(addr string, log *slog.Logger) notifier.Part {
	return notifier.Part{Name: "pprof", Run: func(ctx context.Context) error {
		ps := &http.Server{Addr: addr, ReadHeaderTimeout: 5 * time.Second}
		go func() { <-ctx.Done(); ps.Close() }()
		if err := ps.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			log.Error("pprof", "err", err)
			<-ctx.Done()
		}
		return nil
	}}
}
