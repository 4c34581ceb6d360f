package cli

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
	ucli "github.com/urfave/cli/v2"
)

// ServeConfig is `notifier serve`'s flags, checked and turned into the
// values the service is built from.
type ServeConfig struct {
	Logger  *slog.Logger
	Version string
	// Redis is where pending notices live; an empty URL means the
	// embedded redis-server in Redis.DataDir, with AOF fsync AppendFsync.
	Redis       Target
	AppendFsync string
	// DB is the attempt log's path; Retain is how long its attempts and
	// archived notices are kept (0: forever).
	DB     string
	Retain time.Duration
	// Schedule is the default schedule serve publishes for enqueue.
	Schedule backoff.Schedule
	// Config is the partner config file's content (partners, alerts).
	Config notifier.Config
	// Dispatcher has its settings and Partners set; the caller adds the
	// store, the attempt log, the deliverer and the hooks.
	Dispatcher *notifier.Dispatcher
	// Guard is the SSRF guard of every outbound request; Policy is what
	// serve publishes of it (and the body limit) for enqueue.
	Guard  *notifier.Guard
	Policy notifier.PolicySummary
	// EgressProxy carries every attempt (nil: direct) but those of a
	// partner with a proxy of its own.
	EgressProxy *url.URL
	// DedupWindow is how long a delivered id is refused (negative: never).
	DedupWindow time.Duration
	// Listen, if set, serves the API, metrics and console with these
	// tokens.
	Listen, APIToken, APIReadToken string
	PublicMetrics                  bool
	// FleetLog appends every attempt to the capped fleet stream of about
	// FleetLogMax entries.
	FleetLog    bool
	FleetLogMax int64
}

func serveCommand(env Env) *ucli.Command {
	return &ucli.Command{
		OnUsageError: usageError,
		Name:         "serve",
		Usage:        "deliver notices: subscribe to expired trigger keys, POST, retry, log every attempt",
		Flags: []ucli.Flag{
			redisFlag(), dataDirFlag(), dbFlag(), prefixFlag(env),
			scheduleFlag("default schedule for notices enqueued without one (seconds or Go durations)", "0,10s,30s,1m,2m,5m"),
			&ucli.IntFlag{Name: "concurrency", Value: 512, Usage: "most attempts in flight (an I/O-sized pool: attempts mostly wait on partners)"},
			durationFlag("timeout", notifier.DefaultTimeout, "per-attempt timeout"),
			&ucli.StringFlag{Name: "appendfsync", Value: "everysec", Usage: "embedded Redis AOF fsync policy: everysec or always"},
			durationFlag("shutdown-grace", 10*time.Second, "how long attempts in flight may finish after SIGTERM"),
			withDefaultText(durationFlag("lease", 0, "how long a claimed attempt is reserved before another serve may take it over"),
				"each attempt's timeout (--timeout or its partner's) + 10s"),
			&ucli.Float64Flag{Name: "catchup-rate", Value: 500, Usage: "most attempts per second among those due before serve started (the backlog of downtime); 0: no limit"},
			&ucli.BoolFlag{Name: "no-wake", Usage: "do not touch due trigger keys; leave wake-ups to Redis's expiry cycle (for comparison)"},
			&ucli.StringFlag{Name: "config", EnvVars: []string{"NOTIFIER_CONFIG"}, Usage: "TOML file naming partners (URL prefixes, secrets, success rule, schedule, limits) and the give-up alert URL"},
			durationFlag("dedup-window", env.DedupWindow, "how long enqueue refuses the id of a delivered notice (0: not at all)"),
			durationFlag("retain", DefaultRetain, "how long the attempt log keeps attempts and archived notices (for retry and replay); 0 keeps everything"),
			&ucli.BoolFlag{Name: "allow-private", Usage: "allow partners on loopback, private, link-local and other internal addresses (off: the SSRF guard refuses them at dial time)"},
			&ucli.StringSliceFlag{Name: "allow-cidr", Usage: "allow this internal range (CIDR or IP) through the SSRF guard (repeatable)"},
			&ucli.BoolFlag{Name: "https-only", Usage: "refuse http:// partner URLs at enqueue"},
			&ucli.StringFlag{Name: "egress-proxy", Usage: "send every attempt through this HTTP proxy (http://[user:password@]host:port; CONNECT for https); prefer the environment variable when it holds a password"},
			&ucli.IntFlag{Name: "max-body", Value: notifier.MaxBodyBytes, Usage: "largest body enqueue accepts, in bytes (at most 1 MiB)"},
			&ucli.StringFlag{Name: "listen", EnvVars: []string{"NOTIFIER_LISTEN"}, Usage: "serve the HTTP API, /healthz, /readyz and /metrics on ADDR (off by default)"},
			&ucli.StringFlag{Name: "api-token", EnvVars: []string{"NOTIFIER_API_TOKEN"}, Usage: "bearer token the API requires (at least 16 characters; prefer the environment variable)"},
			&ucli.StringFlag{Name: "api-read-token", EnvVars: []string{"NOTIFIER_API_READ_TOKEN"}, Usage: "token for read-only logins to the web console under /ui/ (at least 16 characters; prefer the environment variable)"},
			&ucli.BoolFlag{Name: "public-metrics", Usage: "serve /metrics without the token"},
			&ucli.BoolFlag{Name: "fleet-log", Usage: "also append every attempt to a capped Redis stream, which notifier tail --fleet follows (several serve hosts)"},
			&ucli.Int64Flag{Name: "fleet-log-max", Value: env.FleetLogMax, Usage: "about how many attempts the fleet stream keeps"},
			&ucli.IntFlag{Name: "partner-concurrency", Usage: "most attempts in flight to one partner or host without its own max_concurrent",
				DefaultText: "half of --concurrency"},
			&ucli.StringFlag{Name: "log-level", Value: "info", EnvVars: []string{"NOTIFIER_LOG_LEVEL"}, Usage: "least severe log records written to stderr: debug, info, warn or error"},
			&ucli.StringFlag{Name: "log-format", Value: "text", EnvVars: []string{"NOTIFIER_LOG_FORMAT"}, Usage: "log format on stderr: text or json"},
		},
		Action: func(c *ucli.Context) error {
			cfg, err := serveConfig(c, env)
			if err != nil {
				return err
			}
			return env.Serve(c.Context, cfg)
		},
	}
}

// DefaultRetain is how long serve keeps attempts and archived notices
// without --retain: 30 days.
const DefaultRetain = 720 * time.Hour

// leaseSlack is what each attempt's lease adds to its timeout when --lease
// is not given.
const leaseSlack = 10 * time.Second

// serveConfig checks serve's flags and config file.
func serveConfig(c *ucli.Context, env Env) (ServeConfig, error) {
	log, err := newLogger(c.App.ErrWriter, c.String("log-level"), c.String("log-format"))
	if err != nil {
		return ServeConfig{}, err
	}
	cfg := ServeConfig{Logger: log, Version: env.Version, Schedule: backoff.Default, DB: dbPath(c),
		AppendFsync: c.String("appendfsync"), Listen: c.String("listen"),
		APIToken: strings.TrimSpace(c.String("api-token")), APIReadToken: strings.TrimSpace(c.String("api-read-token")),
		PublicMetrics: c.Bool("public-metrics"), FleetLog: c.Bool("fleet-log"), FleetLogMax: c.Int64("fleet-log-max"),
		DedupWindow: duration(c, "dedup-window"), Retain: duration(c, "retain"), Redis: target(c)}
	if s := c.String("schedule"); s != "" {
		if cfg.Schedule, err = backoff.Parse(s); err != nil {
			return ServeConfig{}, fmt.Errorf("--schedule: %w", err)
		}
	}
	timeout := duration(c, "timeout")
	if c.Int("concurrency") < 1 || c.Int("concurrency") > 10000 || timeout <= 0 ||
		duration(c, "shutdown-grace") <= 0 || c.Float64("catchup-rate") < 0 {
		return ServeConfig{}, fmt.Errorf("%w: --concurrency must be 1-10000, --timeout and --shutdown-grace positive, --catchup-rate not negative", ErrBadInput)
	}
	if path := c.String("config"); path != "" {
		loaded, err := notifier.LoadConfig(path)
		if err != nil {
			return ServeConfig{}, fmt.Errorf("%w: %v", ErrBadInput, err)
		}
		cfg.Config = *loaded
	}
	// Without --lease, each attempt's lease is its own timeout plus
	// leaseSlack, so any partner timeout works; an explicit --lease is
	// fixed, and must outlast the longest attempt.
	lease, slack := duration(c, "lease"), time.Duration(0)
	if lease == 0 {
		lease, slack = timeout+leaseSlack, leaseSlack
	}
	if longest, who := cfg.Config.LongestTimeout(timeout); slack == 0 && lease <= longest {
		return ServeConfig{}, fmt.Errorf("%w: --lease %s must be longer than the longest attempt timeout (%s, %s), or left unset to follow each attempt's timeout", ErrBadInput, lease, longest, who)
	}
	perPartner := c.Int("partner-concurrency")
	if perPartner == 0 {
		perPartner = max(c.Int("concurrency")/2, 1)
	}
	if perPartner < 0 || cfg.DedupWindow < 0 {
		return ServeConfig{}, fmt.Errorf("%w: --partner-concurrency and --dedup-window must not be negative", ErrBadInput)
	}
	if cfg.DedupWindow == 0 {
		cfg.DedupWindow = -1 // the store's "none"
	}
	if cfg.Retain < 0 {
		return ServeConfig{}, fmt.Errorf("%w: --retain %s: want a duration of 0 (keep everything) or more", ErrBadInput, cfg.Retain)
	}
	allow, err := notifier.ParseCIDRs(c.StringSlice("allow-cidr"))
	if err != nil {
		return ServeConfig{}, fmt.Errorf("%w: --allow-cidr: %v", ErrBadInput, err)
	}
	cfg.Guard = &notifier.Guard{AllowPrivate: c.Bool("allow-private"), Allow: allow}
	if mb := c.Int("max-body"); mb < 1 || mb > notifier.MaxBodyBytes {
		return ServeConfig{}, fmt.Errorf("%w: --max-body %d: want 1 to %d bytes", ErrBadInput, mb, notifier.MaxBodyBytes)
	}
	if raw := c.String("egress-proxy"); raw != "" {
		if cfg.EgressProxy, err = notifier.ParseProxyURL(raw); err != nil {
			return ServeConfig{}, fmt.Errorf("%w: --egress-proxy: %v", ErrBadInput, err)
		}
	}
	cfg.Policy = notifier.PolicySummary{AllowPrivate: cfg.Guard.AllowPrivate, AllowCIDR: c.StringSlice("allow-cidr"),
		HTTPSOnly: c.Bool("https-only"), MaxBody: c.Int("max-body")}
	if cfg.Listen != "" && len(cfg.APIToken) < env.MinTokenLen {
		return ServeConfig{}, fmt.Errorf("%w: --listen needs --api-token (or NOTIFIER_API_TOKEN) of at least %d characters", ErrBadInput, env.MinTokenLen)
	}
	if cfg.AppendFsync != "everysec" && cfg.AppendFsync != "always" {
		return ServeConfig{}, fmt.Errorf("%w: --appendfsync %q: want everysec or always", ErrBadInput, cfg.AppendFsync)
	}
	catchUp := c.Float64("catchup-rate")
	if catchUp == 0 {
		catchUp = -1 // the Dispatcher's "no limit"
	}
	wake := time.Duration(0)
	if c.Bool("no-wake") {
		wake = -1
	}
	cfg.Dispatcher = &notifier.Dispatcher{
		Partners:      notifier.NewPartners(cfg.Config.Partners, perPartner),
		Concurrency:   c.Int("concurrency"),
		Timeout:       timeout,
		Lease:         lease,
		LeaseSlack:    slack,
		CatchUpRate:   catchUp,
		WakeInterval:  wake,
		ShutdownGrace: duration(c, "shutdown-grace"),
		Logger:        log,
	}
	return cfg, nil
}
