package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/notifier/cli"
	"github.com/notifier/notifier/store"
	"github.com/notifier/notifier/store/redistest"
	"github.com/notifier/notifier/store/storetest"
)

const exitNotFound = cli.ExitNotFound

// TestCLIUnknownPartnerIsRefused: a typo in a partner name must not look
// like success. pause and resume of a partner no serve published exit 2
// and list the names serve published (or say it published none), and
// enqueue --file refuses a line naming it whether or not serve published
// partners, as enqueue --partner does.
func TestCLIUnknownPartnerIsRefused(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	rdb := srv.Client()
	lines := filepath.Join(t.TempDir(), "in.jsonl")
	writeFile(t, lines, `{"id":"t1","url":"http://p.example/n","partner":"nosuch"}`+"\n")

	// No serve published any partner.
	for _, cmd := range []string{"pause", "resume"} {
		code, out, errOut := runCLI(t, "", "partner", cmd, "--redis", srv.URL(), "nosuch")
		if code != exitBadInput || out != "" || !strings.Contains(errOut, `partner "nosuch": unknown partner: no serve has published any partner`) {
			t.Errorf("partner %s nosuch (none published) = %d %q %q", cmd, code, out, errOut)
		}
	}
	code, out, errOut := runCLI(t, "", "enqueue", "--redis", srv.URL(), "--file", lines)
	if code != exitBadInput || out != "enqueued 0\n" || !strings.Contains(errOut, "line 1: ") || !strings.Contains(errOut, "unknown partner") {
		t.Errorf("enqueue --file naming an unknown partner (none published) = %d %q %q", code, out, errOut)
	}

	q := store.NewRedis(rdb, "", nil)
	if err := q.PublishPartners(ctx, map[string]string{"shop": `{}`, "bank": `{}`}); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"pause", "resume"} {
		code, out, errOut := runCLI(t, "", "partner", cmd, "--redis", srv.URL(), "shpo")
		if code != exitBadInput || out != "" || errOut != "notifier: partner \"shpo\": unknown partner; known: bank, shop\n" {
			t.Errorf("partner %s shpo = %d %q %q", cmd, code, out, errOut)
		}
	}
	if code, out, errOut = runCLI(t, "", "enqueue", "--redis", srv.URL(), "--file", lines); code != exitBadInput ||
		!strings.Contains(errOut, "line 1: ") || !strings.Contains(errOut, "known: bank, shop") {
		t.Errorf("enqueue --file naming an unknown partner = %d %q %q", code, out, errOut)
	}
	if code, out, errOut = runCLI(t, "", "enqueue", "--redis", srv.URL(), "--url", "http://p.example/n", "--partner", "nosuch"); code != exitBadInput ||
		!strings.Contains(errOut, "known: bank, shop") {
		t.Errorf("enqueue --partner nosuch = %d %q %q", code, out, errOut)
	}
	if code, out, errOut = runCLI(t, "", "partner", "pause", "--redis", srv.URL(), "shop"); code != 0 || out != "paused shop\n" {
		t.Errorf("partner pause shop = %d %q %q", code, out, errOut)
	}
	// A paused partner that left the config can still be resumed.
	if err := q.PublishPartners(ctx, map[string]string{"bank": `{}`}); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut = runCLI(t, "", "partner", "resume", "--redis", srv.URL(), "shop"); code != 0 || !strings.HasPrefix(out, "resumed shop: ") {
		t.Errorf("partner resume of a paused partner no longer published = %d %q %q", code, out, errOut)
	}
}

// TestCLIExitCodes: "not found" has its own exit code (4), apart from
// "Redis unreachable" (1); partner list --json with no partners prints [];
// tail --fleet says when no serve writes the stream; retry says why a
// pending or cancelled notice is not in the archive.
func TestCLIExitCodes(t *testing.T) {
	srv := redistest.Start(t)
	_, db := storetest.StartLog(t)
	r := []string{"--redis", srv.URL()}
	tests := []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"cancel", "nosuch"}, exitNotFound, "not found"},
		{[]string{"status", "--db", db, "nosuch"}, exitNotFound, "not found"},
		{[]string{"retry", "--db", db, "nosuch"}, exitNotFound, "not found"},
		{[]string{"tail", "--fleet"}, exitError, "no serve writes the fleet stream (start serve with --fleet-log)"},
	}
	for _, tt := range tests {
		args := append(append([]string{tt.args[0]}, r...), tt.args[1:]...)
		code, out, errOut := runCLI(t, "", args...)
		if code != tt.code || out != "" || !strings.HasPrefix(errOut, "notifier: ") || !strings.Contains(errOut, tt.err) {
			t.Errorf("%v = %d %q %q, want exit %d and %q", tt.args, code, out, errOut, tt.code, tt.err)
		}
	}
	if code, _, errOut := runCLI(t, "", "status", "--redis", "redis://127.0.0.1:1", "nosuch"); code != exitError {
		t.Errorf("status with Redis unreachable = %d %q, want %d", code, errOut, exitError)
	}
	if code, out, errOut := runCLI(t, "", "partner", "list", "--json", "--redis", srv.URL()); code != 0 || out != "[]\n" {
		t.Errorf("partner list --json with no partners = %d %q %q, want []", code, out, errOut)
	}

	if code, out, errOut := runCLI(t, "", "enqueue", "--redis", srv.URL(), "--url", "http://p.example/n", "--id", "later", "--schedule", "1h"); code != 0 {
		t.Fatalf("enqueue = %d %q %q", code, out, errOut)
	}
	code, out, errOut := runCLI(t, "", "retry", "--redis", srv.URL(), "--db", db, "later")
	if code != exitDuplicate || out != "" || errOut != "notifier: notice later is pending; it is not archived until it ends\n" {
		t.Errorf("retry of a pending notice = %d %q %q", code, out, errOut)
	}
	if code, out, errOut = runCLI(t, "", "cancel", "--redis", srv.URL(), "later"); code != 0 {
		t.Fatalf("cancel = %d %q %q", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "", "retry", "--redis", srv.URL(), "--db", db, "later")
	if code != exitNotFound || out != "" || !strings.Contains(errOut, "notice later was cancelled; cancelled notices are not archived") {
		t.Errorf("retry of a cancelled notice = %d %q %q", code, out, errOut)
	}
}

// TestReplayDefaultsToGaveUp: replay without --outcome sends again only
// the notices that gave up, never the delivered ones, and prints each id it
// sent before its summary line; --json prints objects, the summary on
// stderr.
func TestReplayDefaultsToGaveUp(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	alog, db := storetest.StartLog(t)
	for id, o := range map[string]notifier.Outcome{"g1": notifier.GaveUp, "g2": notifier.GaveUp, "d1": notifier.Delivered} {
		n := notifier.Notice{ID: id, URL: "http://p.example/n", Stamp: now, Schedule: backoff.Schedule{time.Hour}}
		if err := alog.Record(ctx, notifier.Attempt{NoticeID: id, Stamp: now, N: 1, Due: now, Start: now, URL: n.URL,
			Status: 200, Outcome: o, Ended: &n}); err != nil {
			t.Fatal(err)
		}
	}
	if err := alog.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	srv := redistest.Start(t)
	replay := func(args ...string) (int, string, string) {
		return runCLI(t, "", append([]string{"replay", "--redis", srv.URL(), "--db", db, "--since", "1h"}, args...)...)
	}
	code, out, errOut := replay()
	if code != 0 || (out != "g1\ng2\nreplayed 2, skipped 0\n" && out != "g2\ng1\nreplayed 2, skipped 0\n") {
		t.Errorf("replay = %d %q %q, want g1 and g2 only", code, out, errOut)
	}
	code, out, errOut = replay("--outcome", "delivered", "--json")
	if code != 0 || !strings.HasPrefix(out, `{"id":"d1","outcome":"delivered","ended":"`) || strings.Count(out, "\n") != 1 ||
		errOut != "replayed 1, skipped 0\n" {
		t.Errorf("replay --outcome delivered --json = %d %q %q", code, out, errOut)
	}
	if code, out, errOut = replay("--outcome", "any", "--dry-run"); code != 0 || !strings.HasSuffix(out, "would replay 3\n") {
		t.Errorf("replay --outcome any --dry-run = %d %q %q", code, out, errOut)
	}
}
