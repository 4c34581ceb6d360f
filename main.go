// Command notifier delivers webhook notices and retries them on a fixed
// schedule anchored to when each was first enqueued. This file only wires:
// flags, environment, logger, signals, and the packages that do the work.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	_ "net/http/pprof" // served only when NOTIFIER_PPROF names an address
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/notifier/api"
	"github.com/notifier/notifier/notifier/console"
	"github.com/notifier/notifier/store"
	"github.com/notifier/notifier/store/bench"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes: 2 for input notifier refuses, 3 when the only problem is ids
// that are already pending (scripts retrying an enqueue can treat it as done).
const (
	exitError     = 1
	exitBadInput  = 2
	exitDuplicate = 3
)

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

// run runs the CLI with args and returns the exit code; errors are printed
// here, as one line, and nowhere else.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	err := newApp(stdin, stdout, stderr).RunContext(ctx, args)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "notifier: %s\n", notifier.Printable(strings.ReplaceAll(err.Error(), "\n", "; ")))
	switch {
	case errors.Is(err, errOnlyDuplicates), errors.Is(err, notifier.ErrDuplicate):
		return exitDuplicate
	case errors.Is(err, notifier.ErrInvalidNotice), errors.Is(err, backoff.ErrInvalid), errors.Is(err, errBadInput),
		errors.Is(err, notifier.ErrInvalidRule), errors.Is(err, notifier.ErrInvalidSecret), errors.Is(err, notifier.ErrConfig),
		errors.Is(err, notifier.ErrUnknownPartner), errors.Is(err, notifier.ErrBadTime):
		return exitBadInput
	}
	return exitError
}

// usageError turns a flag parsing error into a one-line bad-input error
// (exit 2) instead of urfave/cli's help dump on stdout, which scripts reading
// an id from stdout would take for output.
func usageError(_ *cli.Context, err error, _ bool) error {
	return fmt.Errorf("%w: %v (see --help)", errBadInput, err)
}

var (
	errBadInput       = errors.New("bad input")
	errOnlyDuplicates = errors.New("every refused notice was a duplicate")
)

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	// Commands other than serve report Redis failures as their error.
	redis.SetLogger(redisLog{slog.New(slog.DiscardHandler)})
	return &cli.App{
		Name:            "notifier",
		Usage:           "deliver webhook notices and retry them on a schedule anchored to their first enqueue",
		Version:         version,
		Reader:          stdin,
		Writer:          stdout,
		ErrWriter:       stderr,
		HideHelpCommand: true,
		ExitErrHandler:  func(*cli.Context, error) {}, // run reports errors
		OnUsageError:    usageError,
		// Hidden --generate-bash-completion, which `notifier completion`
		// scripts call.
		EnableBashCompletion: true,
		Commands: []*cli.Command{
			serveCommand(),
			enqueueCommand(),
			tailCommand(),
			statusCommand(),
			cancelCommand(),
			retryCommand(),
			replayCommand(),
			listCommand(),
			partnerCommand(),
			benchCommand(),
			versionCommand(),
			completionCommand(),
		},
	}
}

// Flags shared by every command that reads or writes state.
func redisFlag() cli.Flag {
	return &cli.StringFlag{Name: "redis", EnvVars: []string{"NOTIFIER_REDIS_URL"},
		Usage: "Redis URL: redis://, rediss://, unix://, redis+cluster://h1:p1,h2:p2 (Redis Cluster seeds) or redis+sentinel://h1:p1,h2:p2/master; default: the private redis-server of the serve using --data-dir"}
}
func dataDirFlag() cli.Flag {
	return &cli.StringFlag{Name: "data-dir", Value: "./notifier-data", EnvVars: []string{"NOTIFIER_DATA_DIR"},
		Usage: "directory of the embedded Redis (socket, AOF) and the default attempt log"}
}
func dbFlag() cli.Flag {
	return &cli.StringFlag{Name: "db", EnvVars: []string{"NOTIFIER_DB"}, Usage: "SQLite attempt log (default: <data-dir>/attempts.db)"}
}
func prefixFlag() cli.Flag {
	return &cli.StringFlag{Name: "prefix", Value: store.DefaultPrefix, EnvVars: []string{"NOTIFIER_PREFIX"},
		Usage: "prefix of every Redis key; trigger keys are <prefix>_<id>_<stamp>_<n>"}
}
func scheduleFlag(usage string) cli.Flag {
	return &cli.StringFlag{Name: "schedule", Usage: usage}
}

func dbPath(c *cli.Context) string {
	if p := c.String("db"); p != "" {
		return p
	}
	return filepath.Join(c.String("data-dir"), "attempts.db")
}

// connect opens the Redis that --redis names, or the private one of the serve
// using --data-dir, and checks that it answers.
func connect(c *cli.Context) (redis.UniversalClient, error) { return connectPool(c, 0) }

// adminPool is how many Redis connections serve's API and console share:
// their own, so their reads never hold the connections delivery needs.
const adminPool = 4

// connectPool is connect with at most poolSize connections (0: the default).
func connectPool(c *cli.Context, poolSize int) (redis.UniversalClient, error) {
	if p := c.String("prefix"); p != "" {
		if err := store.ValidatePrefix(p); err != nil {
			return nil, fmt.Errorf("%w: --prefix: %v", errBadInput, err)
		}
	}
	url := c.String("redis")
	if url == "" {
		dir, err := filepath.Abs(c.String("data-dir"))
		if err != nil {
			return nil, fmt.Errorf("%w: --data-dir: %v", errBadInput, err)
		}
		sock := store.SocketPath(dir)
		if _, err := os.Stat(sock); err != nil {
			return nil, fmt.Errorf("no Redis: no serve is running with data dir %s (start `notifier serve`, or pass --redis URL)", c.String("data-dir"))
		}
		url = "unix://" + sock
	}
	rdb, err := store.ConnectPool(c.Context, url, poolSize)
	if errors.Is(err, store.ErrBadRedisURL) {
		return nil, fmt.Errorf("%w: --redis: %v", errBadInput, err)
	}
	return rdb, err
}

// redisLog sends go-redis's own messages (dial failures, dropped pubsub
// messages) to slog at warn, instead of the standard logger.
type redisLog struct{ log *slog.Logger }

func (r redisLog) Printf(_ context.Context, format string, v ...any) {
	r.log.Warn("go-redis: " + fmt.Sprintf(format, v...))
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", errBadInput, level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("%w: --log-format %q: want text or json", errBadInput, format)
}

func serveCommand() *cli.Command {
	return &cli.Command{
		OnUsageError: usageError,
		Name:         "serve",
		Usage:        "deliver notices: subscribe to expired trigger keys, POST, retry, log every attempt",
		Flags: []cli.Flag{
			redisFlag(), dataDirFlag(), dbFlag(), prefixFlag(),
			scheduleFlag("default schedule for notices enqueued without one (seconds or Go durations)"),
			&cli.IntFlag{Name: "concurrency", Value: 512, Usage: "most attempts in flight (an I/O-sized pool: attempts mostly wait on partners)"},
			&cli.DurationFlag{Name: "timeout", Value: notifier.DefaultTimeout, Usage: "per-attempt timeout"},
			&cli.StringFlag{Name: "appendfsync", Value: "everysec", Usage: "embedded Redis AOF fsync policy: everysec or always"},
			&cli.DurationFlag{Name: "shutdown-grace", Value: 10 * time.Second, Usage: "how long attempts in flight may finish after SIGTERM"},
			&cli.DurationFlag{Name: "lease", Usage: "how long a claimed attempt is reserved before another serve may take it over; unset: each attempt's timeout (--timeout or its partner's) + 10s"},
			&cli.Float64Flag{Name: "catchup-rate", Value: 500, Usage: "most attempts per second among those due before serve started (the backlog of downtime); 0: no limit"},
			&cli.BoolFlag{Name: "no-wake", Usage: "do not touch due trigger keys; leave wake-ups to Redis's expiry cycle (for comparison)"},
			&cli.StringFlag{Name: "config", EnvVars: []string{"NOTIFIER_CONFIG"}, Usage: "TOML file naming partners (URL prefixes, secrets, success rule, schedule, limits) and the give-up alert URL"},
			&cli.DurationFlag{Name: "dedup-window", Value: store.DefaultDedupWindow, Usage: "how long enqueue refuses the id of a delivered notice (0: not at all)"},
			&cli.BoolFlag{Name: "allow-private", Usage: "allow partners on loopback, private, link-local and other internal addresses (off: the SSRF guard refuses them at dial time)"},
			&cli.StringSliceFlag{Name: "allow-cidr", Usage: "allow this internal range (CIDR or IP) through the SSRF guard (repeatable)"},
			&cli.BoolFlag{Name: "https-only", Usage: "refuse http:// partner URLs at enqueue"},
			&cli.IntFlag{Name: "max-body", Value: notifier.MaxBodyBytes, Usage: "largest body enqueue accepts, in bytes (at most 1 MiB)"},
			&cli.StringFlag{Name: "listen", EnvVars: []string{"NOTIFIER_LISTEN"}, Usage: "serve the HTTP API, /healthz, /readyz and /metrics on ADDR (off by default)"},
			&cli.StringFlag{Name: "api-token", EnvVars: []string{"NOTIFIER_API_TOKEN"}, Usage: "bearer token the API requires (at least 16 characters; prefer the environment variable)"},
			&cli.StringFlag{Name: "api-read-token", EnvVars: []string{"NOTIFIER_API_READ_TOKEN"}, Usage: "token for read-only logins to the web console under /ui/ (at least 16 characters; prefer the environment variable)"},
			&cli.BoolFlag{Name: "public-metrics", Usage: "serve /metrics without the token"},
			&cli.BoolFlag{Name: "fleet-log", Usage: "also append every attempt to a capped Redis stream that `notifier tail --fleet` follows (several serve hosts)"},
			&cli.Int64Flag{Name: "fleet-log-max", Value: store.DefaultFleetLogMax, Usage: "about how many attempts the fleet stream keeps"},
			&cli.IntFlag{Name: "partner-concurrency", Usage: "most attempts in flight to one partner or host without its own max_concurrent (default: half of --concurrency)"},
			&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: []string{"NOTIFIER_LOG_LEVEL"}},
			&cli.StringFlag{Name: "log-format", Value: "text", EnvVars: []string{"NOTIFIER_LOG_FORMAT"}},
		},
		Action: serve,
	}
}

func serve(c *cli.Context) error {
	log, err := newLogger(c.App.ErrWriter, c.String("log-level"), c.String("log-format"))
	if err != nil {
		return err
	}
	sched := backoff.Default
	if s := c.String("schedule"); s != "" {
		if sched, err = backoff.Parse(s); err != nil {
			return fmt.Errorf("--schedule: %w", err)
		}
	}
	if c.Int("concurrency") < 1 || c.Int("concurrency") > 10000 || c.Duration("timeout") <= 0 ||
		c.Duration("shutdown-grace") <= 0 || c.Float64("catchup-rate") < 0 {
		return fmt.Errorf("%w: --concurrency must be 1-10000, --timeout and --shutdown-grace positive, --catchup-rate not negative", errBadInput)
	}
	var cfg notifier.Config
	if path := c.String("config"); path != "" {
		loaded, err := notifier.LoadConfig(path)
		if err != nil {
			return fmt.Errorf("%w: %v", errBadInput, err)
		}
		cfg = *loaded
	}
	// Without --lease, each attempt's lease is its own timeout plus
	// leaseSlack, so any partner timeout works; an explicit --lease is
	// fixed, and must outlast the longest attempt.
	const leaseSlack = 10 * time.Second
	lease, slack := c.Duration("lease"), time.Duration(0)
	if lease == 0 {
		lease, slack = c.Duration("timeout")+leaseSlack, leaseSlack
	}
	if longest, who := cfg.LongestTimeout(c.Duration("timeout")); lease <= longest {
		return fmt.Errorf("%w: --lease %s must be longer than the longest attempt timeout (%s, %s), or left unset to follow each attempt's timeout", errBadInput, lease, longest, who)
	}
	perPartner := c.Int("partner-concurrency")
	if perPartner == 0 {
		perPartner = max(c.Int("concurrency")/2, 1)
	}
	if perPartner < 0 || c.Duration("dedup-window") < 0 {
		return fmt.Errorf("%w: --partner-concurrency and --dedup-window must not be negative", errBadInput)
	}
	partners := notifier.NewPartners(cfg.Partners, perPartner)
	allow, err := notifier.ParseCIDRs(c.StringSlice("allow-cidr"))
	if err != nil {
		return fmt.Errorf("%w: --allow-cidr: %v", errBadInput, err)
	}
	guard := &notifier.Guard{AllowPrivate: c.Bool("allow-private"), Allow: allow}
	if mb := c.Int("max-body"); mb < 1 || mb > notifier.MaxBodyBytes {
		return fmt.Errorf("%w: --max-body %d: want 1 to %d bytes", errBadInput, mb, notifier.MaxBodyBytes)
	}
	if c.String("listen") != "" && len(c.String("api-token")) < api.MinTokenLen {
		return fmt.Errorf("%w: --listen needs --api-token (or NOTIFIER_API_TOKEN) of at least %d characters", errBadInput, api.MinTokenLen)
	}
	catchUp := c.Float64("catchup-rate")
	if catchUp == 0 {
		catchUp = -1 // the Dispatcher's "no limit"
	}
	fsync := c.String("appendfsync")
	if fsync != "everysec" && fsync != "always" {
		return fmt.Errorf("%w: --appendfsync %q: want everysec or always", errBadInput, fsync)
	}
	redis.SetLogger(redisLog{log})
	// Everything serve creates (socket, AOF, log) is private.
	syscall.Umask(0o077)
	if c.String("redis") == "" {
		dir := c.String("data-dir")
		unlock, err := store.LockDir(dir)
		if err != nil {
			return err
		}
		defer unlock()
		srv, err := store.StartServer(c.Context, store.ServerConfig{Dir: dir, AppendFsync: fsync})
		if err != nil {
			return err
		}
		// Redis outlives the dispatcher: it is stopped only after every
		// attempt in flight has finished or been released.
		redisCtx, stopRedis := context.WithCancel(context.WithoutCancel(c.Context))
		redisDone := make(chan error, 1)
		go func() { redisDone <- srv.Run(redisCtx, log) }()
		defer func() {
			stopRedis()
			if err := <-redisDone; err != nil {
				log.Error("stop embedded redis-server", "err", err)
			}
		}()
		log.Info("started embedded redis-server", "socket", srv.Socket, "appendfsync", fsync)
	}
	rdb, err := connect(c)
	if err != nil {
		return err
	}
	defer rdb.Close()
	q := store.NewRedis(rdb, c.String("prefix"), log)
	q.DedupWindow = c.Duration("dedup-window")
	if q.DedupWindow == 0 {
		q.DedupWindow = -1 // the store's "none"
	}
	if err := q.CheckEvents(c.Context, true); err != nil {
		return err
	}
	if err := q.SetDefaultSchedule(c.Context, sched); err != nil {
		return err
	}
	if err := q.SetURLPolicy(c.Context, notifier.PolicySummary{AllowPrivate: guard.AllowPrivate,
		AllowCIDR: c.StringSlice("allow-cidr"), HTTPSOnly: c.Bool("https-only"), MaxBody: c.Int("max-body")}); err != nil {
		return err
	}
	summaries, err := partners.Summaries()
	if err != nil {
		return err
	}
	// Partners of the previous config may have attempts parked (recorded
	// before serve kept parked names): make them findable first.
	if old, err := q.PublishedPartners(c.Context); err == nil {
		if err := q.RegisterParked(c.Context, slices.Collect(maps.Keys(old))); err != nil {
			return err
		}
	}
	if err := q.PublishPartners(c.Context, summaries); err != nil {
		return err
	}
	path := dbPath(c)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("attempt log dir: %w", err)
	}
	alog, err := store.OpenSQLite(path)
	if err != nil {
		return err
	}
	defer alog.Close()
	// The log outlives the dispatcher so attempts finished during shutdown
	// are still written.
	logCtx, stopLog := context.WithCancel(context.WithoutCancel(c.Context))
	logDone := make(chan error, 1)
	// A log that cannot be written stops serve: delivering without a
	// record of it is not an option.
	runCtx, stopRun := context.WithCancel(c.Context)
	defer stopRun()
	go func() {
		err := alog.Run(logCtx)
		if err != nil {
			log.Error("attempt log failed; stopping", "err", err)
			stopRun()
		}
		logDone <- err
	}()

	if addr := os.Getenv("NOTIFIER_PPROF"); addr != "" {
		// Profiling for operators and `make bench` investigations; off
		// unless asked for, and only on the address given.
		ps := &http.Server{Addr: addr, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := ps.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
				log.Error("pprof", "err", err)
			}
		}()
		defer ps.Close()
	}
	dl := notifier.NewGuardedDeliverer(c.Duration("timeout"), c.Int("concurrency"), guard)
	dl.UserAgent = "notifier/" + version
	wake := time.Duration(0)
	if c.Bool("no-wake") {
		wake = -1
	}
	var alerter *notifier.Alerter
	if cfg.AlertURL != "" {
		alerter = notifier.NewAlerter(cfg.AlertURL, cfg.AlertTimeout, guard, log)
		alertCtx, stopAlerts := context.WithCancel(context.WithoutCancel(c.Context))
		alertsDone := make(chan struct{})
		go func() { _ = alerter.Run(alertCtx); close(alertsDone) }()
		defer func() { stopAlerts(); <-alertsDone }()
	}
	d := &notifier.Dispatcher{
		Queue: q, Events: q, Log: alog, Post: dl.PostWith, Logger: log,
		Partners: partners, Pauser: q,
		Concurrency:   c.Int("concurrency"),
		Lease:         lease,
		LeaseSlack:    slack,
		Timeout:       c.Duration("timeout"),
		CatchUpRate:   catchUp,
		WakeInterval:  wake,
		ShutdownGrace: c.Duration("shutdown-grace"),
	}
	if alerter != nil {
		d.GaveUp = alerter.Notify
	}
	if c.Bool("fleet-log") {
		fl := store.NewFleetLog(q, c.Int64("fleet-log-max"), log)
		observe(d, fl.Observe)
		flCtx, stopFleet := context.WithCancel(context.WithoutCancel(c.Context))
		flDone := make(chan struct{})
		go func() { _ = fl.Run(flCtx); close(flDone) }()
		defer func() { stopFleet(); <-flDone }()
	}
	if addr := c.String("listen"); addr != "" {
		admin, err := connectPool(c, adminPool)
		if err != nil {
			stopLog()
			return errors.Join(err, <-logDone)
		}
		defer admin.Close()
		aq := store.NewRedis(admin, c.String("prefix"), log)
		aq.DedupWindow = q.DedupWindow
		stopAPI, err := startAPI(runCtx, stopRun, addr, c, q, aq, rdb, alog, d, partners, log)
		if err != nil {
			stopLog()
			return errors.Join(err, <-logDone)
		}
		defer stopAPI()
	}
	log.Info("serving", "partners", len(cfg.Partners), "redis", store.Describe(rdb), "db", path, "schedule", sched.String(), "concurrency", d.Concurrency)
	runErr := d.Run(runCtx)
	stopLog()
	logErr := <-logDone
	st := d.Stats()
	log.Info("stopped", "attempts", st.Attempts.Load(), "delivered", st.Delivered.Load(), "gave_up", st.GaveUp.Load(),
		"recovered_by_sweep", st.Recovered.Load(), "foreign_keys", q.ForeignKeys())
	return errors.Join(runErr, logErr)
}

// observe adds f to the attempts d tells its observers of.
func observe(d *notifier.Dispatcher, f func(notifier.Attempt)) {
	if prev := d.Observe; prev != nil {
		d.Observe = func(a notifier.Attempt) { prev(a); f(a) }
		return
	}
	d.Observe = f
}

// startAPI serves the HTTP API and metrics, and the web console under /ui/,
// on addr until ctx ends; the returned func waits for it to stop. A server
// that fails stops serve. Their reads and writes go through admin (a store
// on connections of their own); q and rdb, delivery's, are only asked
// whether they work.
func startAPI(ctx context.Context, stopRun func(), addr string, c *cli.Context, q, admin *store.Redis, rdb redis.UniversalClient,
	alog *store.SQLite, d *notifier.Dispatcher, partners *notifier.Partners, log *slog.Logger) (func(), error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := api.NewMetrics(reg, api.MetricsSource{
		PendingCount: func(ctx context.Context) (int64, error) { return admin.PendingCount(ctx, partners.Names()) },
		Recovered:    d.Stats().Recovered.Load,
		ForeignKeys:  q.ForeignKeys,
	})
	observe(d, m.Observe)
	h, err := api.New(api.Server{Queue: admin, Log: alog, Token: strings.TrimSpace(c.String("api-token")),
		Metrics: m, PublicMetrics: c.Bool("public-metrics"), Logger: log,
		Ready: api.Readiness{Ping: func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
			LastHeard: q.LastHeard, Sync: alog.Sync}.Check})
	if err != nil {
		return nil, fmt.Errorf("%w: --listen: %v", errBadInput, err)
	}
	ui, err := console.New(console.Options{Queue: admin, Log: alog, Token: strings.TrimSpace(c.String("api-token")),
		ReadToken: strings.TrimSpace(c.String("api-read-token")), Partners: partners.Names, Logger: log, Done: ctx.Done()})
	if err != nil {
		return nil, fmt.Errorf("%w: --listen: %v", errBadInput, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ui/", ui)
	mux.Handle("/", h)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--listen: %w", err)
	}
	log.Info("api listening", "addr", ln.Addr().String())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := api.Serve(ctx, ln, mux, log); err != nil {
			log.Error("api stopped; stopping", "err", err)
			stopRun()
		}
	}()
	return func() { stopRun(); <-done }, nil
}

func enqueueCommand() *cli.Command {
	return &cli.Command{
		OnUsageError: usageError,
		Name:         "enqueue",
		Usage:        "store a notice and arm its first attempt; prints its id",
		ArgsUsage:    " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "url", Usage: "partner URL to POST to"},
			&cli.StringFlag{Name: "id", Usage: "notice id (default: generated); sent as Webhook-Id"},
			&cli.StringFlag{Name: "data", Aliases: []string{"d"}, Usage: "body: TEXT, @FILE, or - for standard input"},
			&cli.StringSliceFlag{Name: "header", Aliases: []string{"H"}, Usage: "extra header 'Name: value' (repeatable)"},
			scheduleFlag("this notice's schedule: offsets from the stamp, or a preset (default, alipay, wechat, standard-webhooks); default: its partner's, else the running serve's"),
			&cli.StringFlag{Name: "partner", Usage: "send under this partner of the serve's --config (default: the partner whose url_prefix matches)"},
			&cli.StringFlag{Name: "success", Usage: "success rule: 2xx, status:200,204, body:TEXT, wechat or regex:EXPR (default: the partner's, else 2xx)"},
			&cli.StringFlag{Name: "expect-body", Usage: "success only if the reply body is exactly TEXT (e.g. success), surrounding whitespace ignored"},
			&cli.StringSliceFlag{Name: "secret", EnvVars: []string{"NOTIFIER_SECRETS"}, Usage: "sign attempts with this whsec_ secret, Standard Webhooks style (repeatable, for rotation; NOTIFIER_SECRETS=a,b keeps them off the command line)"},
			&cli.StringFlag{Name: "file", Usage: "enqueue JSON lines {\"id\",\"url\",\"body\",\"headers\",\"schedule\"} from FILE (- for standard input)"},
			redisFlag(), dataDirFlag(), prefixFlag(),
		},
		Action: enqueue,
	}
}

func enqueue(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errBadInput, c.Args().First())
	}
	var override backoff.Schedule
	if s := c.String("schedule"); s != "" {
		var err error
		if override, err = backoff.Parse(s); err != nil {
			return fmt.Errorf("--schedule: %w", err)
		}
	}
	var single *notifier.Notice
	if c.String("file") == "" {
		n, err := noticeFromFlags(c)
		if err != nil {
			return err
		}
		single = &n
	} else if c.IsSet("url") || c.IsSet("data") || c.IsSet("id") || c.IsSet("header") || c.IsSet("partner") ||
		c.IsSet("success") || c.IsSet("expect-body") || (c.IsSet("secret") && os.Getenv("NOTIFIER_SECRETS") == "") {
		return fmt.Errorf("%w: --file takes its notices from the file; --url, --id, --data, --header, --partner, --success, --expect-body and --secret do not apply", errBadInput)
	}
	rdb, err := connect(c)
	if err != nil {
		return err
	}
	defer rdb.Close()
	q := store.NewRedis(rdb, c.String("prefix"), nil)
	def := override
	if def == nil {
		if def, err = q.DefaultSchedule(c.Context); err != nil {
			return err
		}
	}
	raw, err := q.PublishedPartners(c.Context)
	if err != nil {
		return err
	}
	published, err := notifier.ParseSummaries(raw)
	if err != nil {
		return err
	}
	if single != nil {
		if err := notifier.ApplyPartner(single, published, single.Schedule != nil); err != nil {
			return fmt.Errorf("%w: %v", errBadInput, err)
		}
		if single.Schedule == nil {
			single.Schedule = def
		}
		// The stamp is when the notice is stored, not when flags were read.
		single.Stamp = time.Now().Truncate(time.Millisecond)
		errs, err := q.Enqueue(c.Context, []notifier.Notice{*single})
		if err != nil {
			return err
		}
		if errs[0] != nil {
			return errs[0]
		}
		fmt.Fprintln(c.App.Writer, single.ID)
		return nil
	}
	return enqueueFile(c, notifier.WithPartners(q, published), def)
}

func noticeFromFlags(c *cli.Context) (notifier.Notice, error) {
	if c.String("url") == "" {
		return notifier.Notice{}, fmt.Errorf("%w: --url is required (or --file)", errBadInput)
	}
	l := notifier.Line{ID: c.String("id"), URL: c.String("url"), Schedule: c.String("schedule"),
		Partner: c.String("partner"), Success: c.String("success"), Secrets: c.StringSlice("secret")}
	if e := c.String("expect-body"); e != "" {
		if l.Success != "" {
			return notifier.Notice{}, fmt.Errorf("%w: --expect-body and --success both set a success rule; give one", errBadInput)
		}
		r, err := notifier.ExpectBody(e)
		if err != nil {
			return notifier.Notice{}, err
		}
		l.Success = r.String()
	}
	n, err := l.Notice(backoff.Default, time.Now())
	if err != nil {
		return n, err
	}
	if c.String("schedule") == "" {
		n.Schedule = nil // the serve's default, read once Redis is reached
	}
	if d := c.String("data"); d != "" {
		switch {
		case d == "-":
			n.Body, err = io.ReadAll(io.LimitReader(c.App.Reader, notifier.MaxBodyBytes+1))
		case strings.HasPrefix(d, "@"):
			n.Body, err = readFileLimited(d[1:], notifier.MaxBodyBytes+1)
		default:
			n.Body = []byte(d)
		}
		if err != nil {
			return n, fmt.Errorf("%w: --data: %v", errBadInput, err)
		}
	}
	for _, h := range c.StringSlice("header") {
		k, v, err := notifier.ParseHeader(h)
		if err != nil {
			return n, err
		}
		if n.Header == nil {
			n.Header = map[string][]string{}
		}
		n.Header.Add(k, v)
	}
	check := n
	check.Schedule = backoff.Default
	return n, check.Validate()
}

func readFileLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}

// enqueueFile enqueues JSON lines; bad lines are reported by number on
// stderr and the good ones are still enqueued.
func enqueueFile(c *cli.Context, q notifier.Enqueuer, def backoff.Schedule) error {
	in := c.App.Reader
	if name := c.String("file"); name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("%w: --file: %v", errBadInput, err)
		}
		defer f.Close()
		in = f
	}
	var bad, dups int
	enqueued, err := notifier.EnqueueLines(c.Context, in, q, def, time.Now, func(e *notifier.LineError) {
		bad++
		if errors.Is(e, notifier.ErrDuplicate) {
			dups++
		}
		fmt.Fprintf(c.App.ErrWriter, "notifier: %s\n", notifier.Printable(e.Error()))
	})
	fmt.Fprintf(c.App.Writer, "enqueued %d\n", enqueued)
	if err != nil {
		return err
	}
	switch {
	case bad == 0:
		return nil
	case bad == dups:
		return fmt.Errorf("%d lines refused: %w", bad, errOnlyDuplicates)
	}
	return fmt.Errorf("%w: %d lines refused (%d duplicates)", errBadInput, bad, dups)
}

// tailFleet prints the fleet's attempt stream: each line starts with the
// serve host that made the attempt.
func tailFleet(c *cli.Context, q *store.Redis, f notifier.AttemptFilter) error {
	return q.FollowFleet(c.Context, int64(c.Int("n")), c.Bool("follow"), func(fa store.FleetAttempt) error {
		a := fa.Attempt
		if (f.NoticeID != "" && a.NoticeID != f.NoticeID) || (f.Outcome != "" && a.Outcome != f.Outcome) {
			return nil
		}
		if c.Bool("json") {
			b, err := json.Marshal(struct {
				Host string `json:"host"`
				notifier.AttemptJSON
			}{fa.Host, attemptJSON(a)})
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.App.Writer, "%s\n", b)
			return err
		}
		_, err := fmt.Fprintln(c.App.Writer, notifier.FormatFleetAttempt(fa.Host, a))
		return err
	})
}

func attemptJSON(a notifier.Attempt) notifier.AttemptJSON {
	b, _ := notifier.MarshalAttempt(a)
	var j notifier.AttemptJSON
	_ = json.Unmarshal(b, &j)
	return j
}

func tailCommand() *cli.Command {
	return &cli.Command{
		OnUsageError: usageError,
		Name:         "tail",
		Usage:        "print the attempt log, oldest first; -f keeps printing new attempts",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing attempts as a running serve logs them"},
			&cli.StringFlag{Name: "id", Usage: "only this notice"},
			&cli.StringFlag{Name: "outcome", Usage: "only delivered, retry, gave-up, blocked or error"},
			&cli.IntFlag{Name: "n", Value: 20, Usage: "start with the last N attempts (0: all)"},
			&cli.BoolFlag{Name: "json", Usage: "one JSON object per attempt, with every column"},
			&cli.DurationFlag{Name: "poll", Value: 200 * time.Millisecond, Usage: "how often -f looks for new attempts"},
			&cli.BoolFlag{Name: "fleet", Usage: "follow every serve's attempts from Redis (serve --fleet-log) instead of this host's SQLite log; -n 0 starts with none"},
			dataDirFlag(), dbFlag(), redisFlag(), prefixFlag(),
		},
		Action: tail,
	}
}

func tail(c *cli.Context) error {
	f := notifier.AttemptFilter{NoticeID: c.String("id")}
	if o := c.String("outcome"); o != "" {
		out, err := notifier.ParseOutcome(o)
		if err != nil {
			return fmt.Errorf("%w: --outcome: %v", errBadInput, err)
		}
		f.Outcome = out
	}
	if c.Int("n") < 0 || c.Duration("poll") <= 0 {
		return fmt.Errorf("%w: -n must be >= 0 and --poll positive", errBadInput)
	}
	if c.Bool("fleet") {
		return withQueue(func(c *cli.Context, q *store.Redis) error { return tailFleet(c, q, f) })(c)
	}
	alog, err := store.OpenSQLiteReadOnly(dbPath(c))
	if err != nil {
		return err
	}
	defer alog.Close()
	print := func(a notifier.Attempt) error {
		if c.Bool("json") {
			b, err := notifier.MarshalAttempt(a)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.App.Writer, "%s\n", b)
			return err
		}
		_, err := fmt.Fprintln(c.App.Writer, notifier.FormatAttempt(a))
		return err
	}
	var lastSeq int64
	printed := func(a notifier.Attempt) error {
		lastSeq = a.Seq
		return print(a)
	}
	if c.Int("n") == 0 {
		if err := alog.Each(c.Context, f, printed); err != nil {
			return err
		}
	} else {
		rows, err := alog.Last(c.Context, f, c.Int("n"))
		if err != nil {
			return err
		}
		for _, a := range rows {
			if err := printed(a); err != nil {
				return err
			}
		}
	}
	if !c.Bool("follow") {
		return nil
	}
	if lastSeq > 0 {
		f.AfterSeq = lastSeq
	} else if c.Int("n") > 0 {
		// -n filtered nothing in: follow from the end of the whole log.
		if last, err := alog.Last(c.Context, notifier.AttemptFilter{}, 1); err == nil && len(last) == 1 {
			f.AfterSeq = last[0].Seq
		}
	}
	return alog.Follow(c.Context, f, c.Duration("poll"), print)
}

func benchCommand() *cli.Command {
	return &cli.Command{
		OnUsageError: usageError,
		Name:         "bench",
		Usage:        "measure lateness, throughput, enqueue rate and memory per pending notice; one JSON line per scenario",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "redis", EnvVars: []string{"NOTIFIER_REDIS_URL"},
				Usage: "Redis to measure (default: a private redis-server in a temporary directory); the benchmark uses its own key prefix, deletes only its keys, and never flushes"},
			&cli.StringFlag{Name: "backlog", Value: "0,100000,1000000", Usage: "numbers of other pending notices to measure lateness with"},
			&cli.IntFlag{Name: "due", Value: 10000, Usage: "notices coming due in each lateness scenario"},
			&cli.DurationFlag{Name: "window", Value: 5 * time.Second, Usage: "spread of their due times"},
			&cli.IntFlag{Name: "throughput", Value: 30000, Usage: "notices due at once in the throughput scenario (0: skip)"},
			&cli.IntFlag{Name: "file", Value: 100000, Usage: "JSON lines in the enqueue-file scenario, the code path of enqueue --file (0: skip)"},
			&cli.IntFlag{Name: "body", Value: 200, Usage: "body size in bytes"},
			&cli.StringFlag{Name: "cluster", Usage: "run the cluster scenarios on this Redis Cluster (redis+cluster://h1:p1,h2:p2) instead"},
			&cli.StringFlag{Name: "serves", Value: "1,2", Usage: "cluster scenarios: numbers of serve instances (dispatchers) to run"},
			&cli.IntFlag{Name: "concurrency", Value: 512, Usage: "most attempts in flight (an I/O-sized pool: attempts mostly wait on partners)"},
		},
		Action: benchmark,
	}
}

func benchmark(c *cli.Context) error {
	cfg := bench.Config{Due: c.Int("due"), Window: c.Duration("window"), Throughput: c.Int("throughput"), File: c.Int("file"),
		Body: c.Int("body"), Concurrency: c.Int("concurrency")}
	if u := c.String("cluster"); u != "" {
		return benchCluster(c, cfg, u)
	}
	for _, f := range strings.Split(c.String("backlog"), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return fmt.Errorf("%w: --backlog %q: want comma-separated counts", errBadInput, c.String("backlog"))
		}
		cfg.Backlogs = append(cfg.Backlogs, n)
	}
	if cfg.Due < 1 || cfg.Window <= 0 || cfg.Throughput < 0 || cfg.File < 0 || cfg.Body < 0 || cfg.Concurrency < 1 {
		return fmt.Errorf("%w: --due, --window and --concurrency must be positive", errBadInput)
	}
	dir, err := os.MkdirTemp("", "notifier-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg.Dir = dir
	url := c.String("redis")
	if url == "" {
		srv, err := store.StartServer(c.Context, store.ServerConfig{Dir: filepath.Join(dir, "redis"), AppendOnly: "no"})
		if err != nil {
			return err
		}
		defer srv.Stop()
		url = srv.URL()
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		return fmt.Errorf("%w: --redis: %v", errBadInput, err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if err := store.NewRedis(rdb, "", nil).CheckEvents(c.Context, true); err != nil {
		return err
	}
	log, _ := newLogger(c.App.ErrWriter, "info", "text")
	cfg.Log, cfg.Redis = log, rdb
	return bench.Run(c.Context, cfg, c.App.Writer)
}

// benchCluster runs the cluster scenarios against the Redis Cluster at url.
func benchCluster(c *cli.Context, cfg bench.Config, url string) error {
	for _, f := range strings.Split(c.String("serves"), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 16 {
			return fmt.Errorf("%w: --serves %q: want counts from 1 to 16", errBadInput, c.String("serves"))
		}
		cfg.Serves = append(cfg.Serves, n)
	}
	rdb, err := store.Connect(c.Context, url)
	if err != nil {
		if errors.Is(err, store.ErrBadRedisURL) {
			return fmt.Errorf("%w: --cluster: %v", errBadInput, err)
		}
		return err
	}
	defer rdb.Close()
	if _, ok := rdb.(*redis.ClusterClient); !ok {
		return fmt.Errorf("%w: --cluster wants a redis+cluster:// URL", errBadInput)
	}
	if err := store.NewRedis(rdb, "", nil).CheckEvents(c.Context, true); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "notifier-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	log, _ := newLogger(c.App.ErrWriter, "info", "text")
	cfg.Dir, cfg.Log, cfg.Redis, cfg.Cluster = dir, log, rdb, true
	return bench.Run(c.Context, cfg, c.App.Writer)
}

func statusCommand() *cli.Command {
	return &cli.Command{
		OnUsageError: usageError,
		Name:         "status",
		Usage:        "show a notice's state (pending, delivered, gave-up), attempts so far and next due time",
		ArgsUsage:    "ID",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
			redisFlag(), dataDirFlag(), dbFlag(), prefixFlag(),
		},
		Action: status,
	}
}

func status(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("%w: status takes one notice id", errBadInput)
	}
	id := c.Args().First()
	if err := notifier.ValidateStoredID(id); err != nil { // a look-up, as in oneID
		return err
	}
	rdb, err := connect(c)
	if err != nil {
		return err
	}
	defer rdb.Close()
	var alog notifier.History // nil, not a nil *store.SQLite: no log on this host
	switch l, err := store.OpenSQLiteReadOnly(dbPath(c)); {
	case err == nil:
		alog = l
		defer l.Close()
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	st, _, err := notifier.NoticeStatus(c.Context, store.NewRedis(rdb, c.String("prefix"), nil), alog, id)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		b, err := json.Marshal(st)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.App.Writer, "%s\n", b)
		return nil
	}
	fmt.Fprint(c.App.Writer, st.Format(time.Now()))
	return nil
}

// withQueue runs f with the store of the command's --redis and --prefix.
func withQueue(f func(c *cli.Context, q *store.Redis) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		rdb, err := connect(c)
		if err != nil {
			return err
		}
		defer rdb.Close()
		return f(c, store.NewRedis(rdb, c.String("prefix"), nil))
	}
}

func cancelCommand() *cli.Command {
	return &cli.Command{
		OnUsageError: usageError,
		Name:         "cancel",
		Usage:        "end a pending notice without sending it again",
		ArgsUsage:    "ID",
		Flags:        []cli.Flag{redisFlag(), dataDirFlag(), prefixFlag()},
		Action: withQueue(func(c *cli.Context, q *store.Redis) error {
			id, err := oneID(c)
			if err != nil {
				return err
			}
			inFlight, err := q.CancelInFlight(c.Context, id)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "cancelled %s\n", id)
			if inFlight {
				fmt.Fprintln(c.App.ErrWriter, "notifier: an attempt was in flight: it may still reach the partner, but nothing follows it")
			}
			return nil
		}),
	}
}

func oneID(c *cli.Context) (string, error) {
	if c.NArg() != 1 {
		return "", fmt.Errorf("%w: %s takes one notice id", errBadInput, c.Command.Name)
	}
	id := c.Args().First()
	// A look-up: a notice enqueued before "." and ".." were refused can
	// still be named here.
	return id, notifier.ValidateStoredID(id)
}

func retryCommand() *cli.Command {
	return &cli.Command{
		OnUsageError: usageError,
		Name:         "retry",
		Usage:        "send an ended notice (given up, or delivered) again now, with a fresh stamp and its schedule; prints its id",
		ArgsUsage:    "ID",
		Flags:        []cli.Flag{redisFlag(), dataDirFlag(), dbFlag(), prefixFlag()},
		Action: func(c *cli.Context) error {
			id, err := oneID(c)
			if err != nil {
				return err
			}
			alog, err := store.OpenSQLiteReadOnly(dbPath(c))
			if err != nil {
				return err
			}
			defer alog.Close()
			e, err := alog.Ended(c.Context, id)
			if err != nil {
				return err
			}
			rdb, err := connect(c)
			if err != nil {
				return err
			}
			defer rdb.Close()
			errs, err := notifier.Intake{Queue: store.NewRedis(rdb, c.String("prefix"), nil)}.Resend(c.Context, []notifier.Notice{e.Notice})
			if err != nil {
				return err
			}
			if errs[0] != nil {
				return errs[0]
			}
			fmt.Fprintln(c.App.Writer, id)
			return nil
		},
	}
}

func endedFilter(c *cli.Context, outcome string) (notifier.NoticeFilter, error) {
	var f notifier.NoticeFilter
	now := time.Now()
	var err error
	if v := c.String("since"); v != "" {
		if f.Since, err = notifier.ParseWhen(v, now); err != nil {
			return f, err
		}
	}
	if v := c.String("until"); v != "" {
		if f.Until, err = notifier.ParseWhen(v, now); err != nil {
			return f, err
		}
	}
	if outcome != "" {
		o, err := notifier.ParseOutcome(outcome)
		if err != nil || (o != notifier.Delivered && o != notifier.GaveUp) {
			return f, fmt.Errorf("%w: outcome %q: want delivered or gave-up", errBadInput, outcome)
		}
		f.Outcome = o
	}
	f.Partner = c.String("partner")
	return f, nil
}

func replayCommand() *cli.Command {
	return &cli.Command{
		OnUsageError: usageError,
		Name:         "replay",
		Usage:        "send ended notices again, in bulk, each with a fresh stamp (pending ones are skipped)",
		ArgsUsage:    " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "since", Usage: "notices that ended at or after T (RFC 3339, a date, or a duration ago such as 2h); required"},
			&cli.StringFlag{Name: "until", Usage: "and before T"},
			&cli.StringFlag{Name: "outcome", Usage: "only gave-up or delivered ones"},
			&cli.StringFlag{Name: "partner", Usage: "only this partner's"},
			&cli.BoolFlag{Name: "dry-run", Usage: "list what would be sent, send nothing"},
			redisFlag(), dataDirFlag(), dbFlag(), prefixFlag(),
		},
		Action: replay,
	}
}

func replay(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errBadInput, c.Args().First())
	}
	if c.String("since") == "" {
		return fmt.Errorf("%w: --since is required (replaying every notice ever is rarely meant)", errBadInput)
	}
	f, err := endedFilter(c, c.String("outcome"))
	if err != nil {
		return err
	}
	// A replayed notice that ends again moves to the end of the archive:
	// without an end to the range, a replay would meet it again and again.
	if f.Until.IsZero() {
		f.Until = time.Now()
	}
	alog, err := store.OpenSQLiteReadOnly(dbPath(c))
	if err != nil {
		return err
	}
	defer alog.Close()
	total, err := alog.CountEnded(c.Context, f)
	if err != nil {
		return err
	}
	if c.Bool("dry-run") {
		err := alog.EachEnded(c.Context, f, func(e notifier.EndedNotice) error {
			_, err := fmt.Fprintf(c.App.Writer, "%s\t%s\t%s\t%s\n", notifier.Printable(e.Notice.ID), notifier.Printable(string(e.Outcome)),
				e.Ended.UTC().Format(time.RFC3339), notifier.Printable(notifier.RedactURL(e.Notice.URL)))
			return err
		})
		fmt.Fprintf(c.App.Writer, "would replay %d\n", total)
		return err
	}
	rdb, err := connect(c)
	if err != nil {
		return err
	}
	defer rdb.Close()
	in := notifier.Intake{Queue: store.NewRedis(rdb, c.String("prefix"), nil)}
	bar := newProgress(c.App.ErrWriter, total)
	var sent, skipped, done int
	batch := make([]notifier.Notice, 0, 500)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		errs, err := in.Resend(c.Context, batch)
		if err != nil {
			return err
		}
		for i, e := range errs {
			if e != nil {
				skipped++
				fmt.Fprintf(c.App.ErrWriter, "notifier: skipped %s\n", notifier.Printable(batch[i].ID+": "+e.Error()))
			} else {
				sent++
			}
		}
		done += len(batch)
		bar.set(done)
		batch = batch[:0]
		return nil
	}
	seen := map[string]bool{} // the archive may list a notice twice while it changes under the cursor
	err = alog.EachEnded(c.Context, f, func(e notifier.EndedNotice) error {
		if seen[e.Notice.ID] {
			return nil
		}
		seen[e.Notice.ID] = true
		batch = append(batch, e.Notice)
		if len(batch) == cap(batch) {
			return flush()
		}
		return nil
	})
	err = errors.Join(err, flush())
	bar.finish()
	fmt.Fprintf(c.App.Writer, "replayed %d, skipped %d\n", sent, skipped)
	return err
}

// progress draws a one-line progress bar on a terminal, and nothing
// elsewhere (logs and pipes get the summary line only).
type progress struct {
	w     io.Writer
	total int
	on    bool
	last  time.Time
}

func newProgress(w io.Writer, total int) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, total: total, on: ok && term.IsTerminal(int(f.Fd())) && total > 0}
}

func (p *progress) set(done int) {
	if !p.on || (time.Since(p.last) < 100*time.Millisecond && done < p.total) {
		return
	}
	p.last = time.Now()
	const width = 30
	filled := width * done / p.total
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d", strings.Repeat("#", filled), strings.Repeat(".", width-filled), done, p.total)
}

func (p *progress) finish() {
	if p.on {
		fmt.Fprintln(p.w)
	}
}

func listCommand() *cli.Command {
	return &cli.Command{
		OnUsageError: usageError,
		Name:         "list",
		Usage:        "list notices by state: pending (from Redis), delivered or gave-up (from the archive)",
		ArgsUsage:    " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "state", Value: "pending", Usage: "pending, delivered or gave-up"},
			&cli.StringFlag{Name: "partner", Usage: "only this partner's"},
			&cli.StringFlag{Name: "since", Usage: "delivered/gave-up: ended at or after T"},
			&cli.StringFlag{Name: "until", Usage: "delivered/gave-up: ended before T"},
			&cli.IntFlag{Name: "n", Value: 100, Usage: "at most N notices (0: all)"},
			&cli.BoolFlag{Name: "json", Usage: "one JSON object per notice"},
			redisFlag(), dataDirFlag(), dbFlag(), prefixFlag(),
		},
		Action: list,
	}
}

// listed is one line of `notifier list`.
type listed struct {
	ID      string     `json:"id"`
	State   string     `json:"state"`
	Partner string     `json:"partner,omitempty"`
	Stamp   time.Time  `json:"stamp"`
	Attempt int        `json:"attempt"`
	Of      int        `json:"of"`
	Due     *time.Time `json:"due,omitempty"`
	Ended   *time.Time `json:"ended,omitempty"`
	URL     string     `json:"url"`
}

var errEnough = errors.New("enough")

func list(c *cli.Context) error {
	if c.NArg() > 0 || c.Int("n") < 0 {
		return fmt.Errorf("%w: list takes flags only, and -n must be >= 0", errBadInput)
	}
	limit, count := c.Int("n"), 0
	emit := func(l listed) error {
		if c.Bool("json") {
			b, err := json.Marshal(l)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "%s\n", b)
		} else {
			when := ""
			switch {
			case l.Due != nil:
				when = "due " + l.Due.UTC().Format("2006-01-02T15:04:05.000Z")
			case l.Ended != nil:
				when = "ended " + l.Ended.UTC().Format("2006-01-02T15:04:05.000Z")
			}
			partner := l.Partner
			if partner == "" {
				partner = "-"
			}
			p := notifier.Printable
			fmt.Fprintf(c.App.Writer, "%s\t%s\t%s\t#%d/%d\t%s\t%s\n", p(l.ID), p(l.State), p(partner), l.Attempt, l.Of, when, p(l.URL))
		}
		count++
		if limit > 0 && count >= limit {
			return errEnough
		}
		return nil
	}
	var err error
	switch state := c.String("state"); state {
	case "pending":
		if c.IsSet("since") || c.IsSet("until") {
			return fmt.Errorf("%w: --since and --until apply to delivered and gave-up notices", errBadInput)
		}
		rdb, cerr := connect(c)
		if cerr != nil {
			return cerr
		}
		defer rdb.Close()
		err = store.NewRedis(rdb, c.String("prefix"), nil).EachPending(c.Context, func(p notifier.PendingNotice) error {
			if f := c.String("partner"); f != "" && p.Notice.Partner != f {
				return nil
			}
			st, due := notifier.StatePending, p.Due.UTC()
			if p.Parked {
				st = notifier.StateParked
			}
			return emit(listed{ID: p.Notice.ID, State: string(st), Partner: p.Notice.Partner, Stamp: p.Notice.Stamp.UTC(), Attempt: p.N,
				Of: len(p.Notice.Schedule), Due: &due, URL: notifier.RedactURL(p.Notice.URL)})
		})
	case "delivered", "gave-up":
		f, ferr := endedFilter(c, state)
		if ferr != nil {
			return ferr
		}
		alog, oerr := store.OpenSQLiteReadOnly(dbPath(c))
		if oerr != nil {
			return oerr
		}
		defer alog.Close()
		err = alog.EachEnded(c.Context, f, func(e notifier.EndedNotice) error {
			ended := e.Ended.UTC()
			return emit(listed{ID: e.Notice.ID, State: string(e.Outcome), Partner: e.Partner, Stamp: e.Notice.Stamp.UTC(),
				Attempt: e.Attempts, Of: len(e.Notice.Schedule), Ended: &ended, URL: notifier.RedactURL(e.Notice.URL)})
		})
	default:
		return fmt.Errorf("%w: --state %q: want pending, delivered or gave-up", errBadInput, state)
	}
	if errors.Is(err, errEnough) {
		return nil
	}
	return err
}

func partnerCommand() *cli.Command {
	flags := []cli.Flag{redisFlag(), dataDirFlag(), prefixFlag()}
	name := func(c *cli.Context) (string, error) {
		if c.NArg() != 1 {
			return "", fmt.Errorf("%w: %s takes one partner name", errBadInput, c.Command.Name)
		}
		if err := notifier.ValidatePartnerName(c.Args().First()); err != nil {
			return "", fmt.Errorf("%w: %v", errBadInput, err)
		}
		return c.Args().First(), nil
	}
	return &cli.Command{
		OnUsageError: usageError,
		Name:         "partner",
		Usage:        "show partners' state, pause and resume them",
		Subcommands: []*cli.Command{
			{
				OnUsageError: usageError,
				Name:         "list",
				Usage:        "each partner of the running serve's config: paused or not, failures in a row, parked notices",
				Flags:        append([]cli.Flag{&cli.BoolFlag{Name: "json", Usage: "one JSON object per partner"}}, flags...),
				Action: withQueue(func(c *cli.Context, q *store.Redis) error {
					raw, err := q.PublishedPartners(c.Context)
					if err != nil {
						return err
					}
					sums, err := notifier.ParseSummaries(raw)
					if err != nil {
						return err
					}
					names := make([]string, 0, len(sums))
					for n := range sums {
						names = append(names, n)
					}
					slices.Sort(names)
					states, err := q.PartnerStates(c.Context, names)
					if err != nil {
						return err
					}
					for _, n := range names {
						st := states[n]
						if c.Bool("json") {
							b, err := json.Marshal(struct {
								notifier.PartnerSummary
								Paused bool   `json:"paused"`
								Reason string `json:"reason,omitempty"`
								Fails  int    `json:"fails_in_a_row"`
								Parked int64  `json:"parked"`
							}{sums[n], st.Paused, st.Reason, st.Fails, st.Parked})
							if err != nil {
								return err
							}
							fmt.Fprintf(c.App.Writer, "%s\n", b)
							continue
						}
						state := "active"
						if st.Paused {
							state = "paused (" + st.Reason + ")"
						}
						fmt.Fprintf(c.App.Writer, "%s\t%s\tfails-in-a-row=%d\tparked=%d\n", notifier.Printable(n), notifier.Printable(state), st.Fails, st.Parked)
					}
					if len(names) == 0 {
						fmt.Fprintln(c.App.ErrWriter, "notifier: no partners: the running serve has no --config partners")
					}
					return nil
				}),
			},
			{
				OnUsageError: usageError,
				Name:         "pause",
				Usage:        "pause a partner: its notices wait (parked) until resume",
				ArgsUsage:    "NAME",
				Flags:        append([]cli.Flag{&cli.StringFlag{Name: "reason", Value: "paused by an operator"}}, flags...),
				Action: withQueue(func(c *cli.Context, q *store.Redis) error {
					n, err := name(c)
					if err != nil {
						return err
					}
					if err := q.Pause(c.Context, n, c.String("reason")); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "paused %s\n", n)
					return nil
				}),
			},
			{
				OnUsageError: usageError,
				Name:         "resume",
				Usage:        "resume a paused partner: its parked notices are sent now",
				ArgsUsage:    "NAME",
				Flags:        flags,
				Action: withQueue(func(c *cli.Context, q *store.Redis) error {
					n, err := name(c)
					if err != nil {
						return err
					}
					k, err := q.Resume(c.Context, n)
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "resumed %s: %d parked notices re-armed\n", n, k)
					return nil
				}),
			},
		},
	}
}

func versionCommand() *cli.Command {
	return &cli.Command{
		OnUsageError: usageError,
		Name:         "version",
		Usage:        "print the version, Go version and platform",
		Action: func(c *cli.Context) error {
			_, err := fmt.Fprintf(c.App.Writer, "notifier %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}

// Completion scripts ask the binary itself for candidates
// (urfave/cli's --generate-bash-completion), so they never go stale.
const bashCompletion = `_notifier_complete() {
  local cur opts
  COMPREPLY=()
  cur="${COMP_WORDS[COMP_CWORD]}"
  if [[ "$cur" == "-"* ]]; then
    opts=$( "${COMP_WORDS[@]:0:$COMP_CWORD}" "$cur" --generate-bash-completion 2>/dev/null )
  else
    opts=$( "${COMP_WORDS[@]:0:$COMP_CWORD}" --generate-bash-completion 2>/dev/null )
  fi
  COMPREPLY=( $(compgen -W "${opts}" -- "$cur") )
  return 0
}
complete -o bashdefault -o default -F _notifier_complete notifier
`

const zshCompletion = `#compdef notifier
_notifier() {
  local -a opts
  local cur=${words[-1]}
  if [[ "$cur" == "-"* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} $cur --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
compdef _notifier notifier
`

func completionCommand() *cli.Command {
	return &cli.Command{
		OnUsageError: usageError,
		Name:         "completion",
		Usage:        "print a shell completion script: bash or zsh (e.g. source <(notifier completion bash))",
		ArgsUsage:    "bash|zsh",
		Action: func(c *cli.Context) error {
			switch c.Args().First() {
			case "bash":
				_, err := io.WriteString(c.App.Writer, bashCompletion)
				return err
			case "zsh":
				_, err := io.WriteString(c.App.Writer, zshCompletion)
				return err
			}
			return fmt.Errorf("%w: completion takes bash or zsh", errBadInput)
		},
	}
}
