package cli

import (
	"fmt"

	"github.com/notifier/notifier/notifier"
	ucli "github.com/urfave/cli/v2"
)

func cancelCommand(env Env) *ucli.Command {
	return &ucli.Command{
		OnUsageError: usageError,
		Name:         "cancel",
		Usage:        "end a pending notice without sending it again",
		ArgsUsage:    "ID",
		Flags:        []ucli.Flag{redisFlag(), dataDirFlag(), prefixFlag(env)},
		Action: withStore(env, func(c *ucli.Context, q Store) error {
			id, err := oneID(c)
			if err != nil {
				return err
			}
			inFlight, err := q.CancelInFlight(c.Context, id)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "cancelled %s\n", id)
			if inFlight {
				fmt.Fprintln(c.App.ErrWriter, "notifier: an attempt was in flight: it may still reach the partner, but nothing follows it")
			}
			return nil
		}),
	}
}

func oneID(c *ucli.Context) (string, error) {
	if c.NArg() != 1 {
		return "", fmt.Errorf("%w: %s takes one notice id", ErrBadInput, c.Command.Name)
	}
	id := c.Args().First()
	// A look-up: a notice enqueued before "." and ".." were refused can
	// still be named here.
	return id, notifier.ValidateStoredID(id)
}
