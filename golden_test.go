package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/store"
	"github.com/notifier/notifier/store/redistest"
	"github.com/notifier/notifier/store/storetest"
)

// session runs CLI commands against one Redis and attempt log and writes
// down what an operator would see: each command, its stdout and stderr, and
// its exit code. The --redis and --db flags are added at the end of each
// command that takes them (flags may follow the arguments) and left out of
// the record, so the record reads as the commands were typed.
type session struct {
	t         *testing.T
	redis, db string
	b         strings.Builder
}

func newSession(t *testing.T, redis, db string) *session {
	return &session{t: t, redis: redis, db: db}
}

// plumbing is the --redis and --db flags command args takes.
func (s *session) plumbing(args []string) []string {
	var out []string
	switch args[0] {
	case "status", "retry", "replay", "list", "tail", "enqueue", "cancel", "partner":
		if s.redis != "" {
			out = append(out, "--redis", s.redis)
		}
	}
	switch args[0] {
	case "status", "retry", "replay", "list", "tail":
		if s.db != "" {
			out = append(out, "--db", s.db)
		}
	}
	return out
}

// run runs notifier args with stdin and records it.
func (s *session) run(stdin string, args ...string) {
	s.t.Helper()
	full := append(append([]string{}, args...), s.plumbing(args)...)
	code, out, errOut := runCLI(s.t, stdin, full...)
	shown := make([]string, len(args))
	for i, a := range args {
		shown[i] = a
		if a == "" || strings.ContainsAny(a, " \t\"'{}$*?&|;<>") {
			shown[i] = "'" + a + "'"
		}
	}
	fmt.Fprintf(&s.b, "$ notifier %s\n", strings.Join(shown, " "))
	s.b.WriteString(out)
	for _, line := range strings.SplitAfter(errOut, "\n") {
		if line != "" {
			s.b.WriteString("stderr: " + line)
		}
	}
	fmt.Fprintf(&s.b, "[exit %d]\n\n", code)
}

var reRFC3339 = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`)

// check compares the record with testdata/name (go test -update rewrites
// it), with times, which change from run to run, as TIME.
func (s *session) check(name string) {
	s.t.Helper()
	golden(s.t, name, reRFC3339.ReplaceAllString(s.b.String(), "TIME"))
}

// TestGoldenUnknownPartners (#16 item 1): a typo in a partner name is
// refused everywhere, with the known names, and never looks like success.
func TestGoldenUnknownPartners(t *testing.T) {
	srv := redistest.Start(t)
	s := newSession(t, srv.URL(), "")
	line := `{"id":"t1","url":"http://127.0.0.1:9/n","partner":"nosuch"}`
	s.run("", "partner", "pause", "nosuch")
	s.run(line, "enqueue", "--file", "-")
	if err := store.NewRedis(srv.Client(), "", nil).PublishPartners(context.Background(), map[string]string{"shop": `{}`, "bank": `{}`}); err != nil {
		t.Fatal(err)
	}
	s.run("", "partner", "pause", "shpo")
	s.run("", "partner", "resume", "shpo")
	s.run("", "enqueue", "--url", "http://127.0.0.1:9/n", "--id", "t2", "--partner", "shpo")
	s.run(line, "enqueue", "--file", "-")
	s.run("", "partner", "pause", "shop", "--reason", "incident 42")
	s.run("", "partner", "list")
	s.run("", "partner", "resume", "shop")
	s.check("cli_unknown_partners.golden")
}

// TestGoldenHelpAndUnknownCommands (#16 item 3): help and help CMD print
// help, an unknown command is one line and exit 2, and flags may follow
// the arguments.
func TestGoldenHelpAndUnknownCommands(t *testing.T) {
	s := newSession(t, "", "")
	s.run("", "help")
	s.run("", "help", "status")
	s.run("", "bogus")
	s.run("", "help", "bogus")
	s.run("", "status")
	srv := redistest.Start(t)
	_, db := storetest.StartLog(t)
	s.redis, s.db = srv.URL(), db
	s.run("", "enqueue", "--url", "http://127.0.0.1:9/n", "--id", "order-1", "--schedule", "1h")
	s.run("", "status", "order-1", "--json")
	s.check("cli_help.golden")
}

// TestGoldenEnvironment (#16 items 4 and 5): serve --help shows one
// default and one environment variable per flag, and a description for each.
func TestGoldenEnvironment(t *testing.T) {
	s := newSession(t, "", "")
	s.run("", "serve", "--help")
	s.run("", "enqueue", "--help")
	s.check("cli_serve_help.golden")
}

// TestGoldenExitCodes (#16 item 6): not found exits 4, apart from Redis
// unreachable (1); partner list --json prints [] with no partners; tail
// --fleet says no serve writes the stream; retry says why a pending or a
// cancelled notice is not in the archive.
func TestGoldenExitCodes(t *testing.T) {
	srv := redistest.Start(t)
	_, db := storetest.StartLog(t)
	s := newSession(t, srv.URL(), db)
	s.run("", "cancel", "nosuch")
	s.run("", "status", "nosuch")
	s.run("", "retry", "nosuch")
	s.run("", "partner", "list", "--json")
	s.run("", "tail", "--fleet")
	s.run("", "enqueue", "--url", "http://127.0.0.1:9/n", "--id", "later", "--schedule", "1h")
	s.run("", "enqueue", "--url", "http://127.0.0.1:9/n", "--id", "later", "--schedule", "1h")
	s.run("", "retry", "later")
	s.run("", "cancel", "later")
	s.run("", "retry", "later")
	s.run("", "status", "later")
	s.check("cli_exit_codes.golden")
	if code, _, errOut := runCLI(t, "", "status", "nosuch", "--redis", "redis://127.0.0.1:1"); code != exitError {
		t.Errorf("status with Redis unreachable = %d %q, want %d", code, errOut, exitError)
	}
}

// TestGoldenReplay (#16 item 7): replay sends only notices that gave up
// unless --outcome says otherwise, and prints each id it sent.
func TestGoldenReplay(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	alog, db := storetest.StartLog(t)
	for i, e := range []struct {
		id string
		o  notifier.Outcome
	}{{"g1", notifier.GaveUp}, {"d1", notifier.Delivered}, {"g2", notifier.GaveUp}} {
		at := now.Add(time.Duration(i-3) * time.Minute) // ended in this order
		n := notifier.Notice{ID: e.id, URL: "http://127.0.0.1:9/n", Stamp: at, Schedule: backoff.Schedule{time.Hour}}
		if err := alog.Record(ctx, notifier.Attempt{NoticeID: e.id, Stamp: at, N: 1, Due: at, Start: at, URL: n.URL,
			Status: 503, Outcome: e.o, Ended: &n}); err != nil {
			t.Fatal(err)
		}
	}
	if err := alog.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	srv := redistest.Start(t)
	s := newSession(t, srv.URL(), db)
	s.run("", "replay", "--since", "1h", "--dry-run")
	s.run("", "replay", "--since", "1h")
	s.run("", "replay", "--since", "1h", "--outcome", "delivered", "--json")
	s.run("", "replay", "--since", "1h", "--outcome", "any")
	s.run("", "replay")
	s.run("", "list", "--state", "pending")
	s.check("cli_replay.golden")
}
