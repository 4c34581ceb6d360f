package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/store"
	"github.com/notifier/notifier/store/redistest"
	"github.com/notifier/notifier/store/storetest"
)

// TestBadInputIsOneLineAndExit2: bad flags and values get one line on
// stderr, nothing on stdout, and exit code 2, before anything is stored.
func TestBadInputIsOneLineAndExit2(t *testing.T) {
	nowhere := filepath.Join(t.TempDir(), "none")
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"UnknownFlag", []string{"serve", "--bogus"}, exitBadInput},
		{"FlagWithoutValue", []string{"enqueue", "--url"}, exitBadInput},
		{"NotANumber", []string{"serve", "--concurrency", "abc"}, exitBadInput},
		{"ConcurrencyTooHigh", []string{"serve", "--concurrency", "2000000000", "--data-dir", nowhere}, exitBadInput},
		{"BadScheme", []string{"enqueue", "--url", "ftp://x/y", "--data-dir", nowhere}, exitBadInput},
		{"BadSchedule", []string{"enqueue", "--url", "http://x/y", "--schedule", "10,5", "--data-dir", nowhere}, exitBadInput},
		{"BadHeader", []string{"enqueue", "--url", "http://x/y", "-H", "novalue", "--data-dir", nowhere}, exitBadInput},
		{"ReservedHeader", []string{"enqueue", "--url", "http://x/y", "-H", "Webhook-Id: x", "--data-dir", nowhere}, exitBadInput},
		{"BadOutcome", []string{"tail", "--outcome", "nope", "--data-dir", nowhere}, exitBadInput},
		{"StatusWithTwoIDs", []string{"status", "a", "b", "--data-dir", nowhere}, exitBadInput},
		{"StatsWithAnArgument", []string{"stats", "a", "--data-dir", nowhere}, exitBadInput},
		// status without an id is `stats`, which needs a running serve.
		{"StatusWithoutIDAndNoServe", []string{"status", "--data-dir", nowhere}, exitError},
		{"PrefixWithBraces", []string{"enqueue", "--url", "http://x/y", "--prefix", "a{b}", "--redis", "redis://127.0.0.1:1"}, exitBadInput},
		{"NoServeRunning", []string{"enqueue", "--url", "http://x/y", "--data-dir", nowhere}, exitError},
		{"UnreachableRedis", []string{"enqueue", "--url", "http://x/y", "--redis", "redis://127.0.0.1:1"}, exitError},
		{"NoAttemptLog", []string{"tail", "--data-dir", nowhere}, exitError},
		// Bare seconds are a duration, as in a schedule: the flag parses,
		// and the missing log is the error.
		{"BareSecondsAreADuration", []string{"tail", "--poll", "0.05", "--data-dir", nowhere}, exitError},
		{"BadDuration", []string{"tail", "--poll", "soon", "--data-dir", nowhere}, exitBadInput},
		{"NegativeTimeout", []string{"serve", "--timeout", "-15", "--data-dir", nowhere}, exitBadInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, "", tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.code, errOut)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			if lines := strings.Count(errOut, "\n"); lines != 1 || !strings.HasPrefix(errOut, "notifier: ") {
				t.Errorf("stderr %q, want one line starting with \"notifier: \"", errOut)
			}
		})
	}
}

// TestEnqueueFileKeepsGoodLines: bad lines are reported by number, the good
// ones around them are enqueued, and a rerun refuses only duplicates.
func TestEnqueueFileKeepsGoodLines(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	input := strings.Join([]string{
		`{"id":"a","url":"http://p.example/n","body":"x"}`,
		`{"id":"b","url":"ftp://p.example/n"}`,
		`{"id":"c","url":"http://p.example/n","body":{"k":1},"headers":{"X-K":"v"},"schedule":"1h"}`,
		`not json`,
		`{"id":"d","url":"http://p.example/n"}`,
	}, "\n")
	path := filepath.Join(t.TempDir(), "in.jsonl")
	if err := os.WriteFile(path, []byte(input), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "", "enqueue", "--redis", srv.URL(), "--file", path)
	if code != exitBadInput || out != "enqueued 3\n" {
		t.Fatalf("enqueue --file = %d %q, want 2 \"enqueued 3\"", code, out)
	}
	for _, want := range []string{"line 2: ", "line 4: "} {
		if !strings.Contains(errOut, "notifier: "+want) {
			t.Errorf("stderr %q does not report %q", errOut, want)
		}
	}
	// c, due in an hour, waits in the payload table rather than the due index.
	ctx := context.Background()
	far, _ := rdb.HGet(ctx, "noticeId:b", "f").Int64()
	if n := rdb.ZCard(ctx, "noticeId:due").Val(); n != 2 || far != 1 {
		t.Errorf("due index holds %d notices and the table %d far ones, want 2 and 1", n, far)
	}
	// From standard input, all three again: only duplicates, exit 3.
	good := strings.Join([]string{
		`{"id":"a","url":"http://p.example/n"}`, `{"id":"c","url":"http://p.example/n"}`, `{"id":"d","url":"http://p.example/n"}`,
	}, "\n")
	code, out, errOut = runCLI(t, good, "enqueue", "--redis", srv.URL(), "--file", "-")
	if code != exitDuplicate || out != "enqueued 0\n" || strings.Count(errOut, "duplicate notice id") != 3 {
		t.Fatalf("re-enqueue = %d %q %q, want exit 3, \"enqueued 0\", three duplicates", code, out, errOut)
	}
}

// TestVersionAndCompletion: `version` names the build, and the completion
// script's source of candidates (--generate-bash-completion) lists the
// commands.
func TestVersionAndCompletion(t *testing.T) {
	code, out, _ := runCLI(t, "", "version")
	if code != 0 || !strings.HasPrefix(out, "notifier "+version+" (go") {
		t.Errorf("version = %d %q", code, out)
	}
	for _, flag := range []string{"--version", "-v"} {
		if code, got, _ := runCLI(t, "", flag); code != 0 || got != out {
			t.Errorf("%s = %d %q, want %q as version prints", flag, code, got, out)
		}
	}
	for _, sh := range []string{"bash", "zsh"} {
		code, out, _ = runCLI(t, "", "completion", sh)
		if code != 0 || !strings.Contains(out, "--generate-bash-completion") || !strings.Contains(out, "notifier bin/notifier ./bin/notifier\n") {
			t.Errorf("completion %s = %d %q, want it registered for notifier, bin/notifier and ./bin/notifier", sh, code, out)
		}
	}
	if code, _, _ = runCLI(t, "", "completion", "fish"); code != exitBadInput {
		t.Errorf("completion fish = %d, want %d", code, exitBadInput)
	}
	b, err := exec.Command(binary, "--generate-bash-completion").Output()
	if err != nil {
		t.Fatal(err)
	}
	out = string(b)
	for _, cmd := range []string{"serve", "enqueue", "tail", "status", "cancel", "retry", "replay", "list", "partner"} {
		if !strings.Contains(out, cmd+"\n") {
			t.Errorf("completion candidates %q lack %s", out, cmd)
		}
	}
}

// TestHumanOutputIsEscaped: text read from the attempt log, the fleet
// stream or published partners cannot drive the terminal: tail, tail
// --fleet, list and partner list print control characters escaped
// (\x1b[2J, \r), never raw.
func TestHumanOutputIsEscaped(t *testing.T) {
	const evil = "\x1b[2J\r\u009b\xff"
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	// An attempt as another writer of the log or the stream could leave it,
	// and one that ends a (valid) notice, for list.
	a := notifier.Attempt{NoticeID: "n" + evil, Partner: "p" + evil, Stamp: now, N: 1, Due: now, Start: now,
		URL: "http://partner.example/" + evil, Status: 500, Outcome: notifier.Retry, Error: "e" + evil, Response: "r" + evil}
	n := notifier.Notice{ID: "n1", URL: "http://partner.example/", Stamp: now, Schedule: backoff.Schedule{0}}
	end := notifier.Attempt{NoticeID: n.ID, Partner: "p" + evil, Stamp: now, N: 1, Due: now, Start: now, URL: n.URL,
		Status: 500, Outcome: notifier.GaveUp, Ended: &n}
	alog, db := storetest.StartLog(t)
	for _, a := range []notifier.Attempt{a, end} {
		if err := alog.Record(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := alog.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	srv := redistest.Start(t)
	rdb := srv.Client()
	line, err := notifier.MarshalAttempt(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: "noticeId:attempts",
		Values: []any{"host", "h" + evil, "partner", a.Partner, "attempt", line}}).Err(); err != nil {
		t.Fatal(err)
	}
	q := store.NewRedis(rdb, "", nil)
	if err := q.PublishPartners(ctx, map[string]string{"p" + evil: "{}"}); err != nil {
		t.Fatal(err)
	}
	if err := q.Pause(ctx, "p"+evil, "why"+evil); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"tail", "--db", db},
		{"tail", "--fleet", "--redis", srv.URL()},
		{"list", "--state", "gave-up", "--db", db},
		{"partner", "list", "--redis", srv.URL()},
	} {
		t.Run(strings.Join(args[:2], " "), func(t *testing.T) {
			code, out, errOut := runCLI(t, "", args...)
			if code != 0 {
				t.Fatalf("%v = %d, stderr %q", args, code, errOut)
			}
			got := out + errOut
			if !utf8.ValidString(got) || strings.ContainsFunc(got, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }) {
				t.Errorf("%v printed control characters or invalid UTF-8:\n%q", args, got)
			}
			if !strings.Contains(got, `\x1b[2J\r\u009b\xff`) {
				t.Errorf("%v = %q, want the stored text shown escaped", args, got)
			}
		})
	}
}

// TestEnqueueWarnsWithoutServe: enqueue into a Redis no serve has published
// its settings to succeeds, and says on stderr that nothing is delivered
// until one runs; once one has, it says nothing.
func TestEnqueueWarnsWithoutServe(t *testing.T) {
	srv := redistest.Start(t)
	code, out, errOut := runCLI(t, "", "enqueue", "--redis", srv.URL(), "--url", "http://127.0.0.1:1/n", "--id", "w1")
	if code != 0 || out != "w1\n" || !strings.Contains(errOut, "no serve has published") {
		t.Errorf("enqueue without serve = %d %q %q; want exit 0 and a warning", code, out, errOut)
	}
	if err := srv.Client().Set(context.Background(), "noticeId:schedule", "0,10s", 0).Err(); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI(t, "", "enqueue", "--redis", srv.URL(), "--url", "http://127.0.0.1:1/n", "--id", "w2")
	if code != 0 || errOut != "" {
		t.Errorf("enqueue with a serve's settings = %d %q; want exit 0 and no warning", code, errOut)
	}
}

// TestHelpText: serve --help shows one default per flag, no bogus value
// placeholder, a description for every flag, and enqueue --file names
// every JSON line field.
func TestHelpText(t *testing.T) {
	code, out, _ := runCLI(t, "", "serve", "--help")
	if code != 0 {
		t.Fatalf("serve --help = %d", code)
	}
	for _, want := range []string{
		"(default: 0,10s,30s,1m,2m,5m)",
		"(default: each attempt's timeout (--timeout or its partner's) + 10s)",
		"(default: half of --concurrency)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("serve --help lacks %q", want)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "--") {
			continue
		}
		switch {
		case f[0] == "--fleet-log" && len(f) > 1 && f[1] == "notifier":
			t.Errorf("--fleet-log shows a value placeholder: %q", line)
		case strings.Count(line, "default:") > 1:
			t.Errorf("two defaults: %q", line)
		case len(f) < 3 && f[0] != "--help":
			t.Errorf("no description: %q", line)
		case (f[0] == "--log-level" || f[0] == "--log-format") && strings.HasPrefix(f[2], "(default"):
			t.Errorf("no description: %q", line)
		}
	}
	_, out, _ = runCLI(t, "", "enqueue", "--help")
	for _, field := range []string{"id", "url", "body", "headers", "schedule", "partner", "success", "secrets"} {
		if !strings.Contains(out, `"`+field+`"`) {
			t.Errorf("enqueue --help: --file does not name %q", field)
		}
	}
}

// TestFlagsFromEnvironment: NOTIFIER_<FLAG> sets a flag that had no
// environment variable before, and --help names it.
func TestFlagsFromEnvironment(t *testing.T) {
	_, out, _ := runCLI(t, "", "serve", "--help")
	for _, v := range []string{"NOTIFIER_TIMEOUT", "NOTIFIER_SCHEDULE", "NOTIFIER_NO_WAKE", "NOTIFIER_PARTNER_CONCURRENCY", "NOTIFIER_REDIS_URL"} {
		if !strings.Contains(out, "[$"+v+"]") {
			t.Errorf("serve --help does not name $%s", v)
		}
	}
	// Every command's flags, each variable in the README's configuration
	// tables.
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	reVar := regexp.MustCompile(`\[\$(NOTIFIER_[A-Z_]+)\]`)
	for _, cmd := range [][]string{{"serve"}, {"enqueue"}, {"tail"}, {"status"}, {"cancel"}, {"retry"}, {"replay"}, {"list"},
		{"partner", "list"}, {"partner", "pause"}, {"partner", "resume"}, {"bench"}} {
		_, help, _ := runCLI(t, "", append(cmd, "--help")...)
		for _, m := range reVar.FindAllStringSubmatch(help, -1) {
			if !strings.Contains(string(readme), "`"+m[1]+"`") {
				t.Errorf("%v --help names $%s, which the README's configuration tables do not", cmd, m[1])
			}
		}
	}
	t.Setenv("NOTIFIER_TIMEOUT", "-1s")
	code, _, errOut := runCLI(t, "", "serve", "--data-dir", filepath.Join(t.TempDir(), "none"))
	if code != exitBadInput || !strings.Contains(errOut, "--timeout") {
		t.Errorf("serve with NOTIFIER_TIMEOUT=-1s = %d %q, want exit 2 about --timeout", code, errOut)
	}
}

// TestHelpAndUnknownCommands: `help` and `help CMD` print help and exit 0;
// an unknown command is one line and exit 2; flags after the arguments
// work.
func TestHelpAndUnknownCommands(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"help", "status"}, {"partner", "help", "pause"}, {"status", "--help"}} {
		code, out, errOut := runCLI(t, "", args...)
		if code != 0 || !strings.Contains(out, "USAGE:") || errOut != "" {
			t.Errorf("%v = %d %q %q, want help and exit 0", args, code, out, errOut)
		}
	}
	for _, args := range [][]string{{"bogus"}, {"help", "bogus"}, {"bogus", "--json"}} {
		code, out, errOut := runCLI(t, "", args...)
		if code != exitBadInput || out != "" || errOut != "notifier: unknown command \"bogus\"\n" {
			t.Errorf("%v = %d %q %q, want exit 2 and one line", args, code, out, errOut)
		}
	}
	srv := redistest.Start(t)
	code, _, errOut := runCLI(t, `{"id":"order-1","url":"http://p.example/n"}`, "enqueue", "--redis", srv.URL(), "--file", "-")
	if code != 0 {
		t.Fatalf("enqueue = %d %q", code, errOut)
	}
	db := filepath.Join(t.TempDir(), "attempts.db")
	code, out, errOut := runCLI(t, "", "status", "order-1", "--json", "--redis", srv.URL(), "--db", db)
	if code != 0 || !strings.HasPrefix(out, "{") {
		t.Errorf("status order-1 --json --redis URL = %d %q %q, want JSON", code, out, errOut)
	}
}

// TestProgressBarOnlyOnATerminal: enqueue --file of a large file draws a
// progress bar on a terminal (a pseudo-terminal from script(1)), and none
// when its output goes to pipes, as in scripts and these tests.
func TestProgressBarOnlyOnATerminal(t *testing.T) {
	script, err := exec.LookPath("script")
	if err != nil {
		t.Fatal("script(1) (util-linux) is needed to run the CLI on a pseudo-terminal")
	}
	srv := redistest.Start(t)
	var b strings.Builder
	for i := 0; b.Len() < 1<<20+1; i++ { // largeFile: the size from which a bar is shown
		fmt.Fprintf(&b, `{"id":"big-%d","url":"http://127.0.0.1:9/n","body":"%s"}`+"\n", i, strings.Repeat("x", 100))
	}
	path := filepath.Join(t.TempDir(), "big.jsonl")
	writeFile(t, path, b.String())

	cmd := exec.Command(script, "-qec", fmt.Sprintf("%s enqueue --redis %s --file %s", binary, srv.URL(), path), "/dev/null")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("enqueue on a terminal: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`enqueue +\d+% \|`).Match(out) || !strings.Contains(string(out), "enqueued ") {
		t.Errorf("enqueue --file on a terminal printed no progress bar:\n%q", out)
	}

	var stdout, stderr bytes.Buffer
	cmd = exec.Command(binary, "enqueue", "--redis", srv.URL(), "--file", path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err == nil || cmd.ProcessState.ExitCode() != exitDuplicate {
		t.Fatalf("enqueue again = %v, want exit %d (all duplicates): %s", err, exitDuplicate, stderr.String())
	}
	if strings.Contains(stderr.String(), "%") || strings.Contains(stderr.String(), "\r") || !strings.HasPrefix(stdout.String(), "enqueued 0\n") {
		t.Errorf("enqueue --file into pipes drew a bar or lost its summary: stdout %q, stderr %.200q", stdout.String(), stderr.String())
	}
}
