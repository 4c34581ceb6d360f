package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/notifier/notifier/notifier"
	ucli "github.com/urfave/cli/v2"
)

func listCommand(env Env) *ucli.Command {
	return &ucli.Command{
		OnUsageError: usageError,
		Name:         "list",
		Usage:        "list notices by state: pending or parked (from Redis), delivered or gave-up (from the archive)",
		ArgsUsage:    " ",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "state", Value: "pending", Usage: "pending (parked ones included), parked, delivered or gave-up"},
			&ucli.StringFlag{Name: "partner", Usage: "only this partner's"},
			&ucli.StringFlag{Name: "since", Usage: "pending/parked: enqueued (stamped) at or after T; delivered/gave-up: ended at or after T (RFC 3339, a date, or a duration ago such as 2h)"},
			&ucli.StringFlag{Name: "until", Usage: "pending/parked: enqueued before T; delivered/gave-up: ended before T"},
			&ucli.IntFlag{Name: "n", Value: 100, Usage: "at most N notices (0: all)"},
			&ucli.BoolFlag{Name: "json", Usage: "one JSON object per notice (no header line)"},
			redisFlag(), dataDirFlag(), dbFlag(), prefixFlag(env),
		},
		Action: func(c *ucli.Context) error { return list(c, env) },
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

// listHeader names the columns of list's text form.
const listHeader = "ID\tSTATE\tPARTNER\tATTEMPT\tWHEN\tURL"

func list(c *ucli.Context, env Env) error {
	if c.NArg() > 0 || c.Int("n") < 0 {
		return fmt.Errorf("%w: list takes flags only, and -n must be >= 0", ErrBadInput)
	}
	limit, count := c.Int("n"), 0
	if !c.Bool("json") {
		// Tab-separated like the rows, so cut -f and awk -F'\t' still
		// work (after tail -n +2); scripts that want no header use --json.
		fmt.Fprintln(c.App.Writer, listHeader)
	}
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
	case "pending", "parked":
		// As in the console: since and until bound when a waiting
		// notice was enqueued (its stamp).
		f, ferr := endedFilter(c, "")
		if ferr != nil {
			return ferr
		}
		q, oerr := open(c, env)
		if oerr != nil {
			return oerr
		}
		defer q.Close()
		err = q.EachPending(c.Context, func(p notifier.PendingNotice) error {
			if (f.Partner != "" && p.Notice.Partner != f.Partner) || (state == "parked" && !p.Parked) ||
				(!f.Since.IsZero() && p.Notice.Stamp.Before(f.Since)) || (!f.Until.IsZero() && !p.Notice.Stamp.Before(f.Until)) {
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
		alog, oerr := env.History(dbPath(c))
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
		return fmt.Errorf("%w: --state %q: want pending, parked, delivered or gave-up", ErrBadInput, state)
	}
	if errors.Is(err, errEnough) {
		return nil
	}
	return err
}
