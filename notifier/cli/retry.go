package cli

import (
	"errors"
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
			e, eerr := alog.Ended(c.Context, id)
			if eerr != nil && !errors.Is(eerr, notifier.ErrNotFound) {
				return eerr
			}
			q, err := open(c, env)
			if err != nil {
				return err
			}
			defer q.Close()
			if eerr != nil {
				return notArchived(c, q, id, eerr)
			}
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

// notArchived says why retry cannot find id in the archive when Redis still
// knows it: pending (exit 3, as a re-enqueue) or cancelled (exit 4).
// Otherwise it returns err, the archive's not-found.
func notArchived(c *ucli.Context, q Store, id string, err error) error {
	st, serr := q.State(c.Context, id)
	switch {
	case serr != nil && !errors.Is(serr, notifier.ErrNotFound):
		return serr
	case st == notifier.StatePending:
		return pendingError{fmt.Errorf("notice %s is pending; it is not archived until it ends", id)}
	case st == notifier.StateParked:
		return pendingError{fmt.Errorf("notice %s is pending (parked: its partner is paused); it is not archived until it ends", id)}
	case st == notifier.StateCancelled:
		return fmt.Errorf("notice %s was cancelled; cancelled notices are not archived, so retry cannot send it (enqueue it again): %w", id, notifier.ErrNotFound)
	}
	return err
}

// pendingError is an error about a notice that is still pending: exit 3,
// as for an enqueue of a pending id, without ErrDuplicate's text.
type pendingError struct{ error }

func (e pendingError) Unwrap() error        { return e.error }
func (e pendingError) Is(target error) bool { return target == notifier.ErrDuplicate }
