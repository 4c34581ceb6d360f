package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/notifier/notifier/notifier"
	ucli "github.com/urfave/cli/v2"
)

func statusCommand(env Env) *ucli.Command {
	return &ucli.Command{
		OnUsageError: usageError,
		Name:         "status",
		Usage:        "show a notice's state (pending, delivered, gave-up), attempts so far and next due time",
		ArgsUsage:    "[ID]",
		Description:  "Without ID, status prints what notifier stores, as notifier stats does.",
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "json", Usage: "print JSON"},
			redisFlag(), dataDirFlag(), dbFlag(), prefixFlag(env),
		},
		Action: func(c *ucli.Context) error { return status(c, env) },
	}
}

func status(c *ucli.Context, env Env) error {
	if c.NArg() == 0 { // no id: what notifier stores, as `notifier stats`
		return stats(c, env)
	}
	if c.NArg() != 1 {
		return fmt.Errorf("%w: status takes one notice id", ErrBadInput)
	}
	id := c.Args().First()
	if err := notifier.ValidateStoredID(id); err != nil { // a look-up, as in oneID
		return err
	}
	q, err := open(c, env)
	if err != nil {
		return err
	}
	defer q.Close()
	l, err := localLog(c, env)
	if err != nil {
		return err
	}
	var alog notifier.History // nil, not a nil Log: no log on this host
	if l != nil {
		alog = l
		defer l.Close()
	}
	st, _, err := notifier.NoticeStatus(c.Context, q, alog, id)
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

// localLog opens the attempt log the flags name, read-only, or returns nil
// when there is none on this host (serve runs elsewhere): status and stats
// then print what Redis knows alone.
func localLog(c *ucli.Context, env Env) (Log, error) {
	l, err := env.History(dbPath(c))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return l, err
}
