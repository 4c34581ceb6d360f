package cli

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/notifier/notifier/notifier"
	ucli "github.com/urfave/cli/v2"
)

func partnerCommand(env Env) *ucli.Command {
	flags := []ucli.Flag{redisFlag(), dataDirFlag(), prefixFlag(env)}
	name := func(c *ucli.Context) (string, error) {
		if c.NArg() != 1 {
			return "", fmt.Errorf("%w: %s takes one partner name", ErrBadInput, c.Command.Name)
		}
		if err := notifier.ValidatePartnerName(c.Args().First()); err != nil {
			return "", fmt.Errorf("%w: %v", ErrBadInput, err)
		}
		return c.Args().First(), nil
	}
	// known refuses a name no running serve published (a typo must not
	// pause nothing and say "paused"), as enqueue --partner does. Resume
	// also takes a partner that is still paused or has parked notices
	// though it left the config.
	known := func(c *ucli.Context, q Store, n string, resume bool) error {
		sums, err := published(c, q)
		if err != nil {
			return err
		}
		err = notifier.KnownPartner(sums, n)
		if err == nil || !resume {
			return err
		}
		states, serr := q.PartnerStates(c.Context, []string{n})
		if serr != nil {
			return serr
		}
		if st := states[n]; st.Paused || st.Parked > 0 {
			return nil
		}
		return err
	}
	return &ucli.Command{
		OnUsageError: usageError,
		Name:         "partner",
		Usage:        "show partners' state, pause and resume them",
		Subcommands: []*ucli.Command{
			{
				OnUsageError: usageError,
				Name:         "list",
				Usage:        "each partner of the running serve's config: paused or not, failures in a row, parked notices",
				Flags:        append([]ucli.Flag{&ucli.BoolFlag{Name: "json", Usage: "one JSON object per partner"}}, flags...),
				Action: withStore(env, func(c *ucli.Context, q Store) error {
					sums, err := published(c, q)
					if err != nil {
						return err
					}
					names := make([]string, 0, len(sums))
					for n := range sums {
						names = append(names, n)
					}
					slices.Sort(names)
					states, err := q.PartnerStates(c.Context, names)
					if err != nil {
						return err
					}
					if len(names) == 0 && c.Bool("json") {
						fmt.Fprintln(c.App.Writer, "[]") // a script's parser gets an empty list, not nothing
					}
					for _, n := range names {
						st := states[n]
						if c.Bool("json") {
							b, err := json.Marshal(struct {
								notifier.PartnerSummary
								Paused bool   `json:"paused"`
								Reason string `json:"reason,omitempty"`
								Fails  int    `json:"fails_in_a_row"`
								Parked int64  `json:"parked"`
							}{sums[n], st.Paused, st.Reason, st.Fails, st.Parked})
							if err != nil {
								return err
							}
							fmt.Fprintf(c.App.Writer, "%s\n", b)
							continue
						}
						state := "active"
						if st.Paused {
							state = "paused (" + st.Reason + ")"
						}
						fmt.Fprintf(c.App.Writer, "%s\t%s\tfails-in-a-row=%d\tparked=%d\n", notifier.Printable(n), notifier.Printable(state), st.Fails, st.Parked)
					}
					if len(names) == 0 {
						fmt.Fprintln(c.App.ErrWriter, "notifier: no partners: the running serve has no --config partners")
					}
					return nil
				}),
			},
			{
				OnUsageError: usageError,
				Name:         "pause",
				Usage:        "pause a partner: its notices wait (parked) until resume",
				ArgsUsage:    "NAME",
				Flags:        append([]ucli.Flag{&ucli.StringFlag{Name: "reason", Value: "paused by an operator"}}, flags...),
				Action: withStore(env, func(c *ucli.Context, q Store) error {
					n, err := name(c)
					if err != nil {
						return err
					}
					if err := known(c, q, n, false); err != nil {
						return err
					}
					if err := q.Pause(c.Context, n, c.String("reason")); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "paused %s\n", n)
					return nil
				}),
			},
			{
				OnUsageError: usageError,
				Name:         "resume",
				Usage:        "resume a paused partner: its parked notices are sent now",
				ArgsUsage:    "NAME",
				Flags:        flags,
				Action: withStore(env, func(c *ucli.Context, q Store) error {
					n, err := name(c)
					if err != nil {
						return err
					}
					if err := known(c, q, n, true); err != nil {
						return err
					}
					k, err := q.Resume(c.Context, n)
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "resumed %s: %s re-armed\n", n, notifier.Plural(int64(k), "parked notice"))
					return nil
				}),
			},
		},
	}
}

// published reads the partners the running serve published.
func published(c *ucli.Context, q Store) (map[string]notifier.PartnerSummary, error) {
	raw, err := q.PublishedPartners(c.Context)
	if err != nil {
		return nil, err
	}
	return notifier.ParseSummaries(raw)
}
