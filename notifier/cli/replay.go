package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/notifier/notifier/notifier"
	ucli "github.com/urfave/cli/v2"
)

func replayCommand(env Env) *ucli.Command {
	return &ucli.Command{
		OnUsageError: usageError,
		Name:         "replay",
		Usage:        "send ended notices again, in bulk, each with a fresh stamp (pending ones are skipped); prints the ids sent, then a summary line",
		ArgsUsage:    " ",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "since", Usage: "notices that ended at or after T (RFC 3339, a date, or a duration ago such as 2h); required"},
			&ucli.StringFlag{Name: "until", Usage: "and before T"},
			&ucli.StringFlag{Name: "outcome", Value: "gave-up", Usage: "which ended notices: gave-up (default) or delivered; any for both"},
			&ucli.StringFlag{Name: "partner", Usage: "only this partner's"},
			&ucli.BoolFlag{Name: "dry-run", Usage: "list what would be sent, send nothing"},
			&ucli.BoolFlag{Name: "json", Usage: "print each replayed notice as a JSON object {\"id\",\"outcome\",\"ended\"} instead of its id (the summary line goes to stderr)"},
			redisFlag(), dataDirFlag(), dbFlag(), prefixFlag(env),
		},
		Action: func(c *ucli.Context) error { return replay(c, env) },
	}
}

func replay(c *ucli.Context, env Env) error {
	if c.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", ErrBadInput, c.Args().First())
	}
	if c.String("since") == "" {
		return fmt.Errorf("%w: --since is required (replaying every notice ever is rarely meant)", ErrBadInput)
	}
	outcome := c.String("outcome")
	if outcome == "any" {
		outcome = ""
	}
	f, err := endedFilter(c, outcome)
	if err != nil {
		return err
	}
	// A replayed notice that ends again moves to the end of the archive:
	// without an end to the range, a replay would meet it again and again.
	if f.Until.IsZero() {
		f.Until = time.Now()
	}
	alog, err := env.History(dbPath(c))
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
			if c.Bool("json") {
				return printReplayed(c, e)
			}
			_, err := fmt.Fprintf(c.App.Writer, "%s\t%s\t%s\t%s\n", notifier.Printable(e.Notice.ID), notifier.Printable(string(e.Outcome)),
				e.Ended.UTC().Format(time.RFC3339), notifier.Printable(notifier.RedactURL(e.Notice.URL)))
			return err
		})
		fmt.Fprintf(summaryWriter(c), "would replay %d\n", total)
		return err
	}
	q, err := open(c, env)
	if err != nil {
		return err
	}
	defer q.Close()
	in := notifier.Intake{Queue: q}
	// Never with --json: its output is for programs.
	bar := newProgress(c.App.ErrWriter, !c.Bool("json"), int64(total), "replay", false)
	var sent, skipped, done int
	batch := make([]notifier.Notice, 0, 500)
	ended := make([]notifier.EndedNotice, 0, 500) // batch's archive entries, for --json
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
				bar.print(c.App.ErrWriter, "notifier: skipped "+notifier.Printable(batch[i].ID+": "+e.Error())+"\n")
				continue
			}
			sent++
			if err := printReplayed(c, ended[i]); err != nil {
				return err
			}
		}
		done += len(batch)
		bar.set(int64(done))
		batch, ended = batch[:0], ended[:0]
		return nil
	}
	seen := map[string]bool{} // the archive may list a notice twice while it changes under the cursor
	err = alog.EachEnded(c.Context, f, func(e notifier.EndedNotice) error {
		if seen[e.Notice.ID] {
			return nil
		}
		seen[e.Notice.ID] = true
		batch, ended = append(batch, e.Notice), append(ended, e)
		if len(batch) == cap(batch) {
			return flush()
		}
		return nil
	})
	err = errors.Join(err, flush())
	bar.finish()
	fmt.Fprintf(summaryWriter(c), "replayed %d, skipped %d\n", sent, skipped)
	return err
}

// printReplayed prints a notice replay sent: its id, or with --json an
// object with its id, how it had ended and when.
func printReplayed(c *ucli.Context, e notifier.EndedNotice) error {
	if !c.Bool("json") {
		_, err := fmt.Fprintln(c.App.Writer, notifier.Printable(e.Notice.ID))
		return err
	}
	b, err := json.Marshal(struct {
		ID      string    `json:"id"`
		Outcome string    `json:"outcome"`
		Ended   time.Time `json:"ended"`
	}{e.Notice.ID, string(e.Outcome), e.Ended.UTC()})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.App.Writer, "%s\n", b)
	return err
}

// summaryWriter is where replay's summary line goes: stdout, after the
// ids, or stderr with --json, so stdout holds JSON lines only.
func summaryWriter(c *ucli.Context) io.Writer {
	if c.Bool("json") {
		return c.App.ErrWriter
	}
	return c.App.Writer
}
