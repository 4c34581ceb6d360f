package cli

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/notifier/notifier/notifier"
	ucli "github.com/urfave/cli/v2"
)

func statsCommand(env Env) *ucli.Command {
	return &ucli.Command{
		OnUsageError: usageError,
		Name:         "stats",
		Usage:        "show what notifier stores and how big it has grown: Redis memory and entries by kind, the attempt log's size and oldest rows",
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "json", Usage: "print JSON"},
			redisFlag(), dataDirFlag(), dbFlag(), prefixFlag(env),
		},
		Action: func(c *ucli.Context) error {
			if c.NArg() != 0 {
				return fmt.Errorf("%w: stats takes no arguments", ErrBadInput)
			}
			return stats(c, env)
		},
	}
}

// stats prints the stats of the Redis and attempt log the flags name; `status`
// without an id does the same. Without an attempt log on this host (serve
// runs elsewhere) it prints Redis's figures alone.
func stats(c *ucli.Context, env Env) error {
	q, err := open(c, env)
	if err != nil {
		return err
	}
	defer q.Close()
	l, err := localLog(c, env)
	if err != nil {
		return err
	}
	var alog notifier.LogStatsReader // nil, not a nil Log: no log on this host
	if l != nil {
		alog = l
		defer l.Close()
	}
	now := time.Now()
	st, err := notifier.ReadStats(c.Context, q, alog, now)
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
	fmt.Fprint(c.App.Writer, st.Format(now))
	return nil
}
