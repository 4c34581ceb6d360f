package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"
)

func benchCommand(env Env) *ucli.Command {
	return &ucli.Command{
		OnUsageError: usageError,
		Name:         "bench",
		Usage:        "measure lateness, throughput, enqueue rate and memory per pending notice; one JSON line per scenario",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "redis", EnvVars: []string{"NOTIFIER_REDIS_URL"},
				Usage: "Redis to measure (default: a private redis-server in a temporary directory); the benchmark uses its own key prefix, deletes only its keys, and never flushes"},
			&ucli.StringFlag{Name: "backlog", Value: "0,100000,1000000", Usage: "numbers of other pending notices to measure lateness with"},
			&ucli.IntFlag{Name: "due", Value: 10000, Usage: "notices coming due in each lateness scenario"},
			durationFlag("window", 5*time.Second, "spread of their due times"),
			&ucli.IntFlag{Name: "throughput", Value: 30000, Usage: "notices due at once in the throughput scenario (0: skip)"},
			&ucli.IntFlag{Name: "file", Value: 100000, Usage: "JSON lines in the enqueue-file scenario, the code path of enqueue --file (0: skip)"},
			&ucli.IntFlag{Name: "body", Value: 200, Usage: "body size in bytes"},
			&ucli.StringFlag{Name: "cluster", Usage: "run the cluster scenarios on this Redis Cluster (redis+cluster://h1:p1,h2:p2) instead"},
			&ucli.StringFlag{Name: "serves", Value: "1,2", Usage: "cluster scenarios: numbers of serve instances (dispatchers) to run"},
			&ucli.IntFlag{Name: "concurrency", Value: 512, Usage: "most attempts in flight (an I/O-sized pool: attempts mostly wait on partners)"},
		},
		Action: benchmark(env),
	}
}

// BenchConfig is `notifier bench`'s flags, checked.
type BenchConfig struct {
	// RedisURL is the Redis to measure ("" : a private redis-server);
	// ClusterURL, if set, runs the cluster scenarios on that cluster with
	// each count of serves in Serves.
	RedisURL, ClusterURL string
	Serves               []int
	Backlogs             []int
	Due                  int
	Window               time.Duration
	Throughput, File     int
	Body, Concurrency    int
	Log                  *slog.Logger
	Out                  io.Writer
}

func benchmark(env Env) ucli.ActionFunc {
	return func(c *ucli.Context) error {
		log, _ := newLogger(c.App.ErrWriter, "info", "text")
		cfg := BenchConfig{RedisURL: c.String("redis"), ClusterURL: c.String("cluster"), Due: c.Int("due"),
			Window: duration(c, "window"), Throughput: c.Int("throughput"), File: c.Int("file"),
			Body: c.Int("body"), Concurrency: c.Int("concurrency"), Log: log, Out: c.App.Writer}
		var err error
		if cfg.Serves, err = counts(c.String("serves"), 1, 16); err != nil {
			return fmt.Errorf("%w: --serves %q: want counts from 1 to 16", ErrBadInput, c.String("serves"))
		}
		if cfg.Backlogs, err = counts(c.String("backlog"), 0, -1); err != nil {
			return fmt.Errorf("%w: --backlog %q: want comma-separated counts", ErrBadInput, c.String("backlog"))
		}
		if cfg.Due < 1 || cfg.Window <= 0 || cfg.Throughput < 0 || cfg.File < 0 || cfg.Body < 0 || cfg.Concurrency < 1 {
			return fmt.Errorf("%w: --due, --window and --concurrency must be positive", ErrBadInput)
		}
		return env.Bench(c.Context, cfg)
	}
}

// counts reads comma-separated counts from lo to hi (hi < 0: no bound).
func counts(list string, lo, hi int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < lo || (hi >= 0 && n > hi) {
			return nil, errors.New("bad count")
		}
		out = append(out, n)
	}
	return out, nil
}
