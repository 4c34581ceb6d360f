package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/notifier/notifier/notifier"
	ucli "github.com/urfave/cli/v2"
)

// tailFleet prints the fleet's attempt stream: each line starts with the
// serve host that made the attempt.
func tailFleet(c *ucli.Context, q Store, f notifier.AttemptFilter) error {
	if c.Bool("follow") {
		// Following waits for the stream; say why nothing comes.
		err := q.FollowFleet(c.Context, 0, false, func(notifier.FleetAttempt) error { return nil })
		switch {
		case errors.Is(err, notifier.ErrNoFleetStream):
			fmt.Fprintf(c.App.ErrWriter, "notifier: %v; waiting for one\n", err)
		case err != nil:
			return err
		}
	}
	return q.FollowFleet(c.Context, int64(c.Int("n")), c.Bool("follow"), func(fa notifier.FleetAttempt) error {
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

func tailCommand(env Env) *ucli.Command {
	return &ucli.Command{
		OnUsageError: usageError,
		Name:         "tail",
		Usage:        "print the attempt log, oldest first; -f keeps printing new attempts",
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing attempts as a running serve logs them"},
			&ucli.StringFlag{Name: "id", Usage: "only this notice"},
			&ucli.StringFlag{Name: "outcome", Usage: "only delivered, retry, gave-up, blocked or error"},
			&ucli.IntFlag{Name: "n", Value: 20, Usage: "start with the last N attempts (0: all)"},
			&ucli.BoolFlag{Name: "json", Usage: "one JSON object per attempt, with every column"},
			durationFlag("poll", 200*time.Millisecond, "how often -f looks for new attempts"),
			&ucli.BoolFlag{Name: "fleet", Usage: "follow every serve's attempts from Redis (serve --fleet-log) instead of this host's SQLite log; -n 0 starts with none"},
			dataDirFlag(), dbFlag(), redisFlag(), prefixFlag(env),
		},
		Action: func(c *ucli.Context) error { return tail(c, env) },
	}
}

func tail(c *ucli.Context, env Env) error {
	f := notifier.AttemptFilter{NoticeID: c.String("id")}
	if o := c.String("outcome"); o != "" {
		out, err := notifier.ParseOutcome(o)
		if err != nil {
			return fmt.Errorf("%w: --outcome: %v", ErrBadInput, err)
		}
		f.Outcome = out
	}
	if c.Int("n") < 0 || duration(c, "poll") <= 0 {
		return fmt.Errorf("%w: -n must be >= 0 and --poll positive", ErrBadInput)
	}
	if c.Bool("fleet") {
		return withStore(env, func(c *ucli.Context, q Store) error { return tailFleet(c, q, f) })(c)
	}
	alog, err := env.History(dbPath(c))
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
	return alog.Follow(c.Context, f, duration(c, "poll"), print)
}
