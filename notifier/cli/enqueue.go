package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
	ucli "github.com/urfave/cli/v2"
)

func enqueueCommand(env Env) *ucli.Command {
	return &ucli.Command{
		OnUsageError: usageError,
		Name:         "enqueue",
		Usage:        "store a notice and arm its first attempt; prints its id",
		ArgsUsage:    " ",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "url", Usage: "partner URL to POST to"},
			&ucli.StringFlag{Name: "id", Usage: "notice id (default: generated); sent as Webhook-Id"},
			&ucli.StringFlag{Name: "data", Aliases: []string{"d"}, Usage: "body: TEXT, @FILE, or - for standard input"},
			&ucli.StringSliceFlag{Name: "header", Aliases: []string{"H"}, Usage: "extra header 'Name: value' (repeatable)"},
			scheduleFlag("this notice's schedule: offsets from the stamp, or a preset (default, alipay, wechat, standard-webhooks)", "its partner's, else the running serve's"),
			&ucli.StringFlag{Name: "partner", Usage: "send under this partner of the serve's --config (default: the partner whose url_prefix matches)"},
			&ucli.StringFlag{Name: "success", Usage: "success rule: 2xx, status:200,204, body:TEXT, wechat or regex:EXPR (default: the partner's, else 2xx)"},
			&ucli.StringFlag{Name: "expect-body", Usage: "success only if the reply body is exactly TEXT (e.g. success), surrounding whitespace ignored"},
			&ucli.StringSliceFlag{Name: "secret", EnvVars: []string{"NOTIFIER_SECRETS"}, Usage: "sign attempts with this whsec_ secret, Standard Webhooks style (repeatable, for rotation; NOTIFIER_SECRETS=a,b keeps them off the command line)"},
			&ucli.StringFlag{Name: "file", Usage: "enqueue JSON lines {\"id\",\"url\",\"body\",\"headers\",\"schedule\",\"partner\",\"success\",\"secrets\"} from FILE (- for standard input)"},
			redisFlag(), dataDirFlag(), prefixFlag(env),
		},
		Action: func(c *ucli.Context) error { return enqueue(c, env) },
	}
}

func enqueue(c *ucli.Context, env Env) error {
	if c.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", ErrBadInput, c.Args().First())
	}
	var override backoff.Schedule
	if s := c.String("schedule"); s != "" {
		var err error
		if override, err = backoff.Parse(s); err != nil {
			return fmt.Errorf("--schedule: %w", err)
		}
	}
	var single *notifier.Notice
	if c.String("file") == "" {
		n, err := noticeFromFlags(c)
		if err != nil {
			return err
		}
		single = &n
	} else if c.IsSet("url") || c.IsSet("data") || c.IsSet("id") || c.IsSet("header") || c.IsSet("partner") ||
		c.IsSet("success") || c.IsSet("expect-body") || (c.IsSet("secret") && os.Getenv("NOTIFIER_SECRETS") == "") {
		return fmt.Errorf("%w: --file takes its notices from the file; --url, --id, --data, --header, --partner, --success, --expect-body and --secret do not apply", ErrBadInput)
	}
	q, err := open(c, env)
	if err != nil {
		return err
	}
	defer q.Close()
	if served, err := q.Served(c.Context); err == nil && !served {
		fmt.Fprintln(c.App.ErrWriter, "notifier: warning: no serve has published its settings to this Redis: notices wait until one runs")
	}
	in := notifier.Intake{Queue: q, Published: q}
	if single != nil {
		errs, err := in.Enqueue(c.Context, []notifier.Notice{*single})
		if err != nil {
			return err
		}
		switch {
		case errors.Is(errs[0], notifier.ErrUnknownPartner), errors.Is(errs[0], notifier.ErrPublished):
			return fmt.Errorf("%w: %v", ErrBadInput, errs[0])
		case errs[0] != nil:
			return errs[0]
		}
		fmt.Fprintln(c.App.Writer, single.ID)
		return nil
	}
	def := override
	if def == nil {
		if def, err = q.DefaultSchedule(c.Context); err != nil {
			return err
		}
	}
	return enqueueFile(c, in, def)
}

func noticeFromFlags(c *ucli.Context) (notifier.Notice, error) {
	if c.String("url") == "" {
		return notifier.Notice{}, fmt.Errorf("%w: --url is required (or --file)", ErrBadInput)
	}
	l := notifier.Line{ID: c.String("id"), URL: c.String("url"), Schedule: c.String("schedule"),
		Partner: c.String("partner"), Success: c.String("success"), Secrets: c.StringSlice("secret")}
	if e := c.String("expect-body"); e != "" {
		if l.Success != "" {
			return notifier.Notice{}, fmt.Errorf("%w: --expect-body and --success both set a success rule; give one", ErrBadInput)
		}
		r, err := notifier.ExpectBody(e)
		if err != nil {
			return notifier.Notice{}, err
		}
		l.Success = r.String()
	}
	n, err := l.Notice(backoff.Default, time.Now())
	if err != nil {
		return n, err
	}
	if c.String("schedule") == "" {
		n.Schedule = nil // the serve's default, read once Redis is reached
	}
	if d := c.String("data"); d != "" {
		switch {
		case d == "-":
			n.Body, err = io.ReadAll(io.LimitReader(c.App.Reader, notifier.MaxBodyBytes+1))
		case strings.HasPrefix(d, "@"):
			n.Body, err = readFileLimited(d[1:], notifier.MaxBodyBytes+1)
		default:
			n.Body = []byte(d)
		}
		if err != nil {
			return n, fmt.Errorf("%w: --data: %v", ErrBadInput, err)
		}
	}
	for _, h := range c.StringSlice("header") {
		k, v, err := notifier.ParseHeader(h)
		if err != nil {
			return n, err
		}
		if n.Header == nil {
			n.Header = map[string][]string{}
		}
		n.Header.Add(k, v)
	}
	check := n
	check.Schedule = backoff.Default
	return n, check.Validate()
}

func readFileLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}

// enqueueFile enqueues JSON lines; bad lines are reported by number on
// stderr and the good ones are still enqueued.
func enqueueFile(c *ucli.Context, q notifier.Enqueuer, def backoff.Schedule) error {
	in := c.App.Reader
	bar := &progress{}
	if name := c.String("file"); name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("%w: --file: %v", ErrBadInput, err)
		}
		defer f.Close()
		// A bar for a large regular file (its size is the total), on a
		// terminal only; standard input has no size to measure against.
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() >= largeFile {
			bar = newProgress(c.App.ErrWriter, true, st.Size(), "enqueue", true)
		}
		in = reader{r: f, p: bar}
	}
	var bad, dups int
	enqueued, err := notifier.EnqueueLines(c.Context, in, q, def, time.Now, func(e *notifier.LineError) {
		bad++
		if errors.Is(e, notifier.ErrDuplicate) {
			dups++
		}
		bar.print(c.App.ErrWriter, "notifier: "+notifier.Printable(e.Error())+"\n")
	})
	bar.finish()
	fmt.Fprintf(c.App.Writer, "enqueued %d\n", enqueued)
	if err != nil {
		return err
	}
	switch {
	case bad == 0:
		return nil
	case bad == dups:
		return fmt.Errorf("%s refused: %w", notifier.Plural(int64(bad), "line"), errOnlyDuplicates)
	}
	if dups == 0 {
		return fmt.Errorf("%w: %s refused", ErrBadInput, notifier.Plural(int64(bad), "line"))
	}
	return fmt.Errorf("%w: %s refused (%s)", ErrBadInput, notifier.Plural(int64(bad), "line"), notifier.Plural(int64(dups), "duplicate"))
}
