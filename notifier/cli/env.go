package cli

import (
	"context"
	"time"

	"github.com/notifier/notifier/notifier"
	ucli "github.com/urfave/cli/v2"
)

// Env is what the CLI reaches outside the process through. main.go builds
// it from package store; tests may build their own.
type Env struct {
	// Version is printed by `notifier version` and sent as User-Agent.
	Version string
	// Defaults shown by --help.
	Prefix      string
	DedupWindow time.Duration
	FleetLogMax int64
	// MinTokenLen is the shortest API token serve accepts.
	MinTokenLen int
	// Serve runs the service until ctx ends.
	Serve func(ctx context.Context, cfg ServeConfig) error
	// Open connects to the Redis t names, checks that it answers, and
	// returns its store of pending notices. A target that cannot be used
	// is an error wrapping ErrBadInput.
	Open func(ctx context.Context, t Target) (Store, error)
	// History opens the attempt log at path, read-only.
	History func(path string) (Log, error)
	// Bench runs `notifier bench`.
	Bench func(ctx context.Context, cfg BenchConfig) error
}

// Store is what the commands do with pending notices and partners.
type Store interface {
	notifier.Submitter
	notifier.Published
	notifier.Notices
	notifier.PartnerAdmin
	notifier.RedisStatsReader
	// CancelInFlight is Cancel that also reports whether an attempt was in
	// flight: its POST may still reach the partner.
	CancelInFlight(ctx context.Context, id string) (inFlight bool, err error)
	// FollowFleet calls fn with the last n attempts of the fleet stream,
	// oldest first, then, if follow is set, with every new one until ctx
	// ends or fn fails.
	FollowFleet(ctx context.Context, n int64, follow bool, fn func(notifier.FleetAttempt) error) error
	// Served reports whether a serve has published its settings to this
	// Redis.
	Served(ctx context.Context) (bool, error)
	// Close releases the connection.
	Close() error
}

// Log is the attempt log as the commands read it.
type Log interface {
	notifier.History
	notifier.LogStatsReader
	// Each calls fn for every attempt matching f, oldest first, up to the
	// end of the log.
	Each(ctx context.Context, f notifier.AttemptFilter, fn func(notifier.Attempt) error) error
	Close() error
}

// Target names the Redis a command works on: URL, or if empty the embedded
// redis-server of the serve using DataDir; keys start with Prefix.
type Target struct {
	URL, DataDir, Prefix string
}

func target(c *ucli.Context) Target {
	return Target{URL: c.String("redis"), DataDir: c.String("data-dir"), Prefix: c.String("prefix")}
}

// open connects to the Redis the command's flags name.
func open(c *ucli.Context, env Env) (Store, error) {
	return env.Open(c.Context, target(c))
}

// withStore runs f with the Redis the command's flags name.
func withStore(env Env, f func(c *ucli.Context, q Store) error) ucli.ActionFunc {
	return func(c *ucli.Context) error {
		q, err := open(c, env)
		if err != nil {
			return err
		}
		defer q.Close()
		return f(c, q)
	}
}

// Flags shared by every command that reads or writes state.
func redisFlag() ucli.Flag {
	return &ucli.StringFlag{Name: "redis", EnvVars: []string{"NOTIFIER_REDIS_URL"},
		Usage: "Redis URL: redis://, rediss://, unix://, host:port (as redis://host:port), redis+cluster://h1:p1,h2:p2 (Redis Cluster seeds) or redis+sentinel://h1:p1,h2:p2/master; default: the private redis-server of the serve using --data-dir"}
}
func dataDirFlag() ucli.Flag {
	return &ucli.StringFlag{Name: "data-dir", Value: "./notifier-data", EnvVars: []string{"NOTIFIER_DATA_DIR"},
		Usage: "directory of the embedded Redis (socket, AOF) and the default attempt log"}
}
func dbFlag() ucli.Flag {
	return &ucli.StringFlag{Name: "db", EnvVars: []string{"NOTIFIER_DB"}, Usage: "SQLite attempt log (default: <data-dir>/attempts.db)"}
}
func prefixFlag(env Env) ucli.Flag {
	return &ucli.StringFlag{Name: "prefix", Value: env.Prefix, EnvVars: []string{"NOTIFIER_PREFIX"},
		Usage: "prefix of every Redis key; trigger keys are <prefix>_<id>_<stamp>_<n>"}
}
func scheduleFlag(usage, defaultText string) ucli.Flag {
	return &ucli.StringFlag{Name: "schedule", Usage: usage, DefaultText: defaultText}
}
