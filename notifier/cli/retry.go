package cli

import (
	"fmt"
	"time"

	"github.com/notifier/notifier/notifier"
	ucli "github.com/urfave/cli/v2"
)

func retryCommand(env Env) *ucli.Command {
	return &ucli.Command{
		OnUsageError: usageError,
		Name:         "retry",
		Usage:        "send an ended notice (given up, or delivered) again now, with a fresh stamp and its schedule; prints its id",
		ArgsUsage:    "ID",
		Flags:        []ucli.Flag{redisFlag(), dataDirFlag(), dbFlag(), prefixFlag(env)},
		Action: func(c *ucli.Context) error {
			id, err := oneID(c)
			if err != nil {
				return err
			}
			alog, err := env.History(dbPath(c))
			if err != nil {
				return err
			}
			defer alog.Close()
			e, err := alog.Ended(c.Context, id)
			if err != nil {
				return err
			}
			q, err := open(c, env)
			if err != nil {
				return err
			}
			defer q.Close()
			errs, err := notifier.Intake{Queue: q}.Resend(c.Context, []notifier.Notice{e.Notice})
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

func endedFilter(c *ucli.Context, outcome string) (notifier.NoticeFilter, error) {
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
			return f, fmt.Errorf("%w: outcome %q: want delivered or gave-up", ErrBadInput, outcome)
		}
		f.Outcome = o
	}
	f.Partner = c.String("partner")
	return f, nil
}
