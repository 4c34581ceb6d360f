// Package cli is notifier's command line: the urfave/cli app, one file per
// command. Each command parses its flags into plain values and does its
// work through the interfaces of package notifier; it reaches Redis and the
// attempt log only through the constructors in Env, which main.go builds
// from package store. Errors are returned, never printed by a command: Run
// prints each as one line and turns it into the exit code.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
	ucli "github.com/urfave/cli/v2"
)

// Exit codes: 1 for any other error (Redis unreachable, for one), 2 for
// input notifier refuses, 3 when the only problem is ids that are already
// pending (scripts retrying an enqueue can treat it as done), 4 when the
// notice named is not found (cancel, status, retry of an unknown id).
const (
	ExitError     = 1
	ExitBadInput  = 2
	ExitDuplicate = 3
	ExitNotFound  = 4
)

var (
	// ErrBadInput is wrapped by errors about flags, arguments and files:
	// exit code 2.
	ErrBadInput       = errors.New("bad input")
	errOnlyDuplicates = errors.New("every refused notice was a duplicate")
)

// Run runs the CLI with args and returns the exit code; errors are printed
// here, as one line, and nowhere else.
func Run(ctx context.Context, env Env, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := newApp(env, stdin, stdout, stderr)
	// urfave/cli calls CommandNotFound (for `notifier bogus` and `notifier
	// help bogus`) and then returns no error: keep it here.
	var notFound error
	app.CommandNotFound = func(_ *ucli.Context, name string) {
		notFound = badInput(fmt.Sprintf("unknown command %q", name))
	}
	err := app.RunContext(ctx, flagsFirst(app.Commands, args))
	if err == nil {
		err = notFound
	}
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "notifier: %s\n", notifier.Printable(strings.ReplaceAll(err.Error(), "\n", "; ")))
	return ExitCode(err)
}

// ExitCode is the exit code for err (nil: 0).
func ExitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errOnlyDuplicates), errors.Is(err, notifier.ErrDuplicate):
		return ExitDuplicate
	case errors.Is(err, notifier.ErrInvalidNotice), errors.Is(err, backoff.ErrInvalid), errors.Is(err, ErrBadInput),
		errors.Is(err, notifier.ErrInvalidRule), errors.Is(err, notifier.ErrInvalidSecret), errors.Is(err, notifier.ErrConfig),
		errors.Is(err, notifier.ErrUnknownPartner), errors.Is(err, notifier.ErrBadTime):
		return ExitBadInput
	case errors.Is(err, notifier.ErrNotFound):
		return ExitNotFound
	}
	return ExitError
}

// badInput is an error that reads as its message alone and is bad input
// (exit 2).
type badInput string

func (e badInput) Error() string { return string(e) }
func (e badInput) Unwrap() error { return ErrBadInput }

// usageError turns a flag parsing error into a one-line bad-input error
// (exit 2) instead of urfave/cli's help dump on stdout, which scripts reading
// an id from stdout would take for output.
func usageError(_ *ucli.Context, err error, _ bool) error {
	return fmt.Errorf("%w: %v (see --help)", ErrBadInput, err)
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", ErrBadInput, level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("%w: --log-format %q: want text or json", ErrBadInput, format)
}

func dbPath(c *ucli.Context) string {
	if p := c.String("db"); p != "" {
		return p
	}
	return filepath.Join(c.String("data-dir"), "attempts.db")
}

func newApp(env Env, stdin io.Reader, stdout, stderr io.Writer) *ucli.App {
	app := &ucli.App{
		Name:           "notifier",
		Usage:          "deliver webhook notices and retry them on a schedule anchored to their first enqueue",
		Version:        env.Version,
		Reader:         stdin,
		Writer:         stdout,
		ErrWriter:      stderr,
		ExitErrHandler: func(*ucli.Context, error) {}, // Run reports errors
		OnUsageError:   usageError,
		// Hidden --generate-bash-completion, which `notifier completion`
		// scripts call.
		EnableBashCompletion: true,
		Commands: []*ucli.Command{
			serveCommand(env),
			enqueueCommand(env),
			tailCommand(env),
			statusCommand(env),
			statsCommand(env),
			cancelCommand(env),
			retryCommand(env),
			replayCommand(env),
			listCommand(env),
			partnerCommand(env),
			benchCommand(env),
			versionCommand(env),
			completionCommand(),
		},
	}
	addEnvVars(app.Commands)
	return app
}

// EnvVar is the environment variable of flag name: NOTIFIER_<NAME>, upper
// case, '-' as '_'. Flags that already name one keep theirs
// (NOTIFIER_REDIS_URL, NOTIFIER_SECRETS).
func EnvVar(name string) string {
	return "NOTIFIER_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// addEnvVars gives every flag of cmds and their subcommands without an
// environment variable its EnvVar, which --help shows as [$NOTIFIER_X].
func addEnvVars(cmds []*ucli.Command) {
	for _, cmd := range cmds {
		for _, f := range cmd.Flags {
			var vars *[]string
			switch f := f.(type) {
			case *ucli.StringFlag:
				vars = &f.EnvVars
			case *ucli.StringSliceFlag:
				vars = &f.EnvVars
			case *ucli.BoolFlag:
				vars = &f.EnvVars
			case *ucli.IntFlag:
				vars = &f.EnvVars
			case *ucli.Int64Flag:
				vars = &f.EnvVars
			case *ucli.Float64Flag:
				vars = &f.EnvVars
			case *ucli.DurationFlag:
				vars = &f.EnvVars
			case *ucli.GenericFlag:
				vars = &f.EnvVars
			default:
				panic(fmt.Sprintf("addEnvVars: flag %s of %s has type %T", f.Names()[0], cmd.Name, f))
			}
			if len(*vars) == 0 {
				*vars = []string{EnvVar(f.Names()[0])}
			}
		}
		addEnvVars(cmd.Subcommands)
	}
}
