package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/store/redistest"
)

// alipayPartner answers "fail" to the first attempt of each notice and
// "success" after, and keeps every request's signature header.
type alipayPartner struct {
	*httptest.Server
	mu   sync.Mutex
	seen map[string]int // notice id -> attempts
	sigs []string
}

func newAlipayPartner(t *testing.T) *alipayPartner {
	p := &alipayPartner{seen: map[string]int{}}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		id := r.Header.Get("Webhook-Id")
		p.mu.Lock()
		p.seen[id]++
		n := p.seen[id]
		p.sigs = append(p.sigs, r.Header.Get("Webhook-Signature"))
		p.mu.Unlock()
		if n == 1 {
			io.WriteString(w, "fail")
			return
		}
		io.WriteString(w, "success")
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *alipayPartner) attempts(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[id]
}

// TestPartnerOperationsEndToEnd drives the partner features through the
// CLI against a serve process: a config file with an Alipay-style partner
// (body rule, schedule, signing secret) matched by URL prefix, idempotent
// enqueue, cancel, list, give-up and retry, replay, and pause/resume.
func TestPartnerOperationsEndToEnd(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	pay := newAlipayPartner(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "attempts.db")
	cfg := filepath.Join(dir, "notifier.toml")
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	writeFile(t, cfg, fmt.Sprintf(`
[[partner]]
name = "shop"
url_prefix = ["%s/alipay/"]
success = "body:success"
schedule = "0,300ms,600ms"
secrets = ["%s"]
pause_after = 3
`, pay.URL, secret))
	logs := startServe(t, rdb, serveArgs(srv.URL(), db, "--config", cfg)...)
	cli := func(args ...string) (int, string, string) {
		t.Helper()
		// Flags go right after the command: urfave/cli stops reading
		// flags at the first argument.
		at := 1
		if args[0] == "partner" {
			at = 2
		}
		flags := []string{"--redis", srv.URL()}
		switch args[0] {
		case "status", "retry", "replay", "list":
			flags = append(flags, "--db", db)
		}
		full := append(append(append([]string{}, args[:at]...), flags...), args[at:]...)
		return runCLI(t, "", full...)
	}

	// Matched by prefix: the partner's rule makes the first "fail" a retry
	// and its schedule brings the second attempt 300 ms after the stamp.
	code, out, errOut := cli("enqueue", "--url", pay.URL+"/alipay/notify", "--id", "order-1", "-d", `{"trade":"1"}`)
	if code != 0 || out != "order-1\n" {
		t.Fatalf("enqueue = %d %q %q", code, out, errOut)
	}
	rows := waitRows(t, db, 2)
	if rows[0].Outcome != notifier.Retry || rows[0].Response != "fail" || !strings.Contains(rows[0].Error, "success rule") ||
		rows[1].Outcome != notifier.Delivered || rows[0].Partner != "shop" {
		t.Fatalf("attempts %+v", rows)
	}
	// The partner's schedule: 300 ms after the stamp, or after the first
	// attempt started if that was late.
	want := max(300*time.Millisecond, rows[0].Start.Add(300*time.Millisecond).Sub(rows[0].Stamp))
	if gap := rows[1].Due.Sub(rows[0].Stamp); gap < want-time.Millisecond || gap > want+time.Millisecond {
		t.Errorf("second attempt due %s after the stamp, want %s (the partner's 300ms from the first start)", gap, want)
	}
	pay.mu.Lock()
	for _, s := range pay.sigs {
		if !strings.HasPrefix(s, "v1,") {
			t.Errorf("attempt signed %q, want a v1 signature", s)
		}
	}
	pay.mu.Unlock()
	if b, _ := os.ReadFile(db + "-wal"); strings.Contains(string(b), strings.TrimPrefix(secret, "whsec_")) {
		t.Error("the attempt log holds the secret")
	}

	// Idempotent enqueue: delivered and pending ids are refused with exit 3.
	code, _, errOut = cli("enqueue", "--url", pay.URL+"/alipay/notify", "--id", "order-1")
	if code != exitDuplicate || !strings.Contains(errOut, "already delivered") {
		t.Errorf("re-enqueue of a delivered id = %d %q", code, errOut)
	}
	cli("enqueue", "--url", pay.URL+"/other", "--id", "later", "--schedule", "1h")
	code, _, errOut = cli("enqueue", "--url", pay.URL+"/other", "--id", "later", "--schedule", "1h")
	if code != exitDuplicate || !strings.Contains(errOut, "already pending") {
		t.Errorf("re-enqueue of a pending id = %d %q", code, errOut)
	}
	code, out, _ = cli("list", "--state", "pending")
	if code != 0 || !strings.HasPrefix(out, "ID\tSTATE\tPARTNER\tATTEMPT\tWHEN\tURL\nlater\tpending\t-\t#1/1\tdue ") {
		t.Errorf("list pending = %d %q", code, out)
	}
	code, out, _ = cli("list", "--state", "delivered", "--partner", "shop")
	if code != 0 || !strings.HasPrefix(out, "ID\tSTATE\tPARTNER\tATTEMPT\tWHEN\tURL\norder-1\tdelivered\tshop\t#2/3\tended ") {
		t.Errorf("list delivered = %d %q", code, out)
	}
	// --since and --until bound a waiting notice's stamp, as in the console.
	if code, out, errOut = cli("list", "--state", "pending", "--since", "1h", "--json"); code != 0 || !strings.Contains(out, `"id":"later"`) {
		t.Errorf("list pending --since 1h = %d %q %q, want later", code, out, errOut)
	}
	if code, out, errOut = cli("list", "--state", "pending", "--until", "1h"); code != 0 || out != "ID\tSTATE\tPARTNER\tATTEMPT\tWHEN\tURL\n" {
		t.Errorf("list pending --until 1h = %d %q %q, want the header alone", code, out, errOut)
	}
	if code, out, errOut = cli("cancel", "later"); code != 0 || out != "cancelled later\n" {
		t.Errorf("cancel = %d %q %q", code, out, errOut)
	}
	if code, out, _ = cli("status", "later"); code != 0 || !strings.Contains(out, "state:    cancelled") {
		t.Errorf("status after cancel = %d %q", code, out)
	}
	if code, _, _ = cli("cancel", "later"); code == 0 {
		t.Error("second cancel succeeded")
	}

	// A notice that gives up (no partner, 404) is archived; retry sends it
	// again with a fresh stamp.
	gone := httptest.NewServer(http.NotFoundHandler())
	defer gone.Close()
	cli("enqueue", "--url", gone.URL+"/x", "--id", "lost", "--schedule", "0", "--expect-body", "ok")
	waitRows(t, db, 3)
	code, out, _ = cli("list", "--state", "gave-up")
	if code != 0 || !strings.HasPrefix(out, "ID\tSTATE\tPARTNER\tATTEMPT\tWHEN\tURL\nlost\tgave-up\t") {
		t.Errorf("list gave-up = %d %q", code, out)
	}
	code, out, _ = cli("replay", "--since", "1h", "--outcome", "gave-up", "--dry-run")
	if code != 0 || !strings.HasSuffix(out, "would replay 1\n") || !strings.HasPrefix(out, "lost\tgave-up\t") {
		t.Errorf("replay --dry-run = %d %q", code, out)
	}
	if code, out, errOut = cli("retry", "lost"); code != 0 || out != "lost\n" {
		t.Fatalf("retry = %d %q %q", code, out, errOut)
	}
	rows = waitRows(t, db, 4)
	if rows[3].NoticeID != "lost" || !rows[3].Stamp.After(rows[2].Stamp) {
		t.Errorf("retried attempt %+v, want a fresh stamp after %s", rows[3], rows[2].Stamp)
	}
	// Replay of everything delivered sends order-1 again.
	deadline := time.Now()
	code, out, errOut = cli("replay", "--since", "1h", "--outcome", "delivered", "--partner", "shop")
	if code != 0 || out != "order-1\nreplayed 1, skipped 0\n" {
		t.Errorf("replay = %d %q %q", code, out, errOut)
	}
	deadline = time.Now().Add(10 * time.Second)
	for pay.attempts("order-1") < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // the partner's own count; no signal to wait on
	}
	if n := pay.attempts("order-1"); n != 3 {
		t.Errorf("order-1 reached the partner %d times, want 3 after the replay", n)
	}

	// Pause by hand: a notice waits, parked; resume sends it.
	if code, _, _ = cli("partner", "pause", "shop"); code != 0 {
		t.Fatal("pause failed")
	}
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), `msg="partner paused`) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // serve says when it has seen the pause
	}
	cli("enqueue", "--url", pay.URL+"/alipay/notify", "--id", "order-2")
	deadline = time.Now().Add(10 * time.Second)
	for {
		_, out, _ = cli("partner", "list")
		if strings.Contains(out, "parked=1") || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // parking happens in serve; polled through the CLI
	}
	if !strings.HasPrefix(out, "shop\tpaused (paused by an operator)\t") || !strings.Contains(out, "parked=1") {
		t.Fatalf("partner list = %q", out)
	}
	if pay.attempts("order-2") != 0 {
		t.Error("a paused partner got a request")
	}
	// status says why it waits: its partner is paused, since when, why.
	code, out, errOut = cli("status", "order-2")
	reParked := regexp.MustCompile(`(?m)^parked:   #1 waits until partner shop resumes \(paused at \S+Z, \S+ ago; reason: paused by an operator\)$`)
	if code != 0 || !strings.Contains(out, "state:    parked\n") || !strings.Contains(out, "stamp:    ") || !reParked.MatchString(out) ||
		strings.Contains(out, "overdue") {
		t.Errorf("status of a parked notice = %d\n%s%s", code, out, errOut)
	}
	// Usually 1; 0 if a serve's own poll saw the resume first and re-armed it.
	if code, out, _ = cli("partner", "resume", "shop"); code != 0 || !strings.HasPrefix(out, "resumed shop: ") {
		t.Errorf("resume = %d %q", code, out)
	}
	deadline = time.Now().Add(10 * time.Second)
	for pay.attempts("order-2") < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // the partner's own count
	}
	if n := pay.attempts("order-2"); n != 2 {
		t.Errorf("order-2 reached the partner %d times after resume, want 2 (fail, then success)", n)
	}
	if code, _, errOut = cli("enqueue", "--url", pay.URL+"/x", "--partner", "nobody"); code != exitBadInput ||
		!strings.Contains(errOut, "unknown partner") {
		t.Errorf("enqueue --partner nobody = %d %q", code, errOut)
	}
	// A notice that names the partner must be under its url_prefix, or it
	// would carry the partner's signature anywhere: refused, by flag and by
	// file alike, and nothing is stored.
	if code, _, errOut = cli("enqueue", "--url", pay.URL+"/x", "--partner", "shop", "--id", "stray-1"); code != exitBadInput ||
		!strings.Contains(errOut, "not under a url_prefix") {
		t.Errorf("enqueue --partner shop outside its prefix = %d %q", code, errOut)
	}
	lines := filepath.Join(dir, "stray.jsonl")
	writeFile(t, lines, `{"id":"stray-2","url":"`+pay.URL+`/alipay.evil/x","partner":"shop"}`+"\n")
	if code, _, errOut = cli("enqueue", "--file", lines); code != exitBadInput ||
		!strings.Contains(errOut, "line 1: ") || !strings.Contains(errOut, "not under a url_prefix") {
		t.Errorf("enqueue --file with a line naming shop outside its prefix = %d %q", code, errOut)
	}
	for _, id := range []string{"stray-1", "stray-2"} {
		if code, out, _ = cli("status", id); code == 0 {
			t.Errorf("status %s = %d %q: a refused notice was stored", id, code, out)
		}
	}
}

// TestBadConfigIsRefused: a config with a typo or a bad value stops serve
// with one line and exit 2, before anything starts.
func TestBadConfigIsRefused(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ name, body, want string }{
		{"UnknownKey", "[[partner]]\nname = \"a\"\nsucess = \"2xx\"\n", "unknown key"},
		{"BadRule", "[[partner]]\nname = \"a\"\nsuccess = \"status:99\"\n", "success"},
		{"BadSecret", "[[partner]]\nname = \"a\"\nsecrets = [\"whsec_short\"]\n", "secrets[0]"},
		{"SecretsWithoutPrefix", "[[partner]]\nname = \"a\"\nsecrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\n", "url_prefix"},
		{"BadSchedule", "[[partner]]\nname = \"a\"\nschedule = \"alipy\"\n", "schedule"},
		{"Duplicate", "[[partner]]\nname = \"a\"\n[[partner]]\nname = \"a\"\n", "twice"},
		{"NotTOML", "[[partner", "invalid config"},
		{"PrefixWithQuery", "[[partner]]\nname = \"a\"\nurl_prefix = [\"https://a.example/cb?k=1\"]\n", "query string"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strconv.Itoa(i)+".toml")
			writeFile(t, path, tt.body)
			code, out, errOut := runCLI(t, "", "serve", "--config", path, "--data-dir", filepath.Join(dir, "data"))
			if code != exitBadInput || out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, tt.want) {
				t.Errorf("serve = %d %q %q; want exit 2 and one line about %q", code, out, errOut, tt.want)
			}
			if strings.Contains(errOut, "whsec_short") {
				t.Error("the error repeats the secret")
			}
		})
	}
}

// TestLeaseShorterThanATimeoutIsRefused: an explicit --lease that a
// partner's timeout outlasts would have that partner POSTed the same attempt
// once per lease; serve refuses it at start and names the partner.
func TestLeaseShorterThanATimeoutIsRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "notifier.toml")
	writeFile(t, path, "[[partner]]\nname = \"slow\"\nurl_prefix = [\"https://slow.example/\"]\ntimeout = \"60s\"\n")
	code, out, errOut := runCLI(t, "", "serve", "--config", path, "--lease", "30s", "--data-dir", filepath.Join(dir, "data"))
	if code != exitBadInput || out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "partner slow") {
		t.Errorf("serve --lease 30s = %d %q %q; want exit 2 and one line naming partner slow", code, out, errOut)
	}
	code, _, errOut = runCLI(t, "", "serve", "--timeout", "20s", "--lease", "20s", "--data-dir", filepath.Join(dir, "data"))
	if code != exitBadInput || !strings.Contains(errOut, "--timeout") {
		t.Errorf("serve --timeout 20s --lease 20s = %d %q; want exit 2 naming --timeout", code, errOut)
	}

	t.Run("DefaultLeaseFollowsALongPartnerTimeout", func(t *testing.T) {
		srv := redistest.Start(t)
		s := spawnServe(t, "--redis", srv.URL(), "--config", path, "--db", filepath.Join(dir, "a.db"))
		t.Cleanup(s.stop)
		s.waitSubscribed(srv.Client(), 1)
	})
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestReplayLargeArchiveSendsEachOnce: a replay over more than one page of
// the archive, while serve delivers (and so re-archives) what it replays,
// sends every notice exactly once more.
func TestReplayLargeArchiveSendsEachOnce(t *testing.T) {
	const total = 1200 // more than two pages of 500
	srv := redistest.Start(t)
	rdb := srv.Client()
	var mu sync.Mutex
	posts := map[string]int{}
	partner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		posts[r.Header.Get("Webhook-Id")]++
		mu.Unlock()
	}))
	defer partner.Close()
	db := filepath.Join(t.TempDir(), "attempts.db")
	startServe(t, rdb, serveArgs(srv.URL(), db)...)
	var lines strings.Builder
	for i := range total {
		fmt.Fprintf(&lines, `{"id":"r%04d","url":"%s/n"}`+"\n", i, partner.URL)
	}
	if code, out, errOut := runCLI(t, lines.String(), "enqueue", "--redis", srv.URL(), "--file", "-"); code != 0 {
		t.Fatalf("enqueue --file = %d %q %q", code, out, errOut)
	}
	waitRows(t, db, total)
	code, out, errOut := runCLI(t, "", "replay", "--redis", srv.URL(), "--db", db, "--since", "1h", "--outcome", "delivered")
	if code != 0 || strings.Count(out, "\n") != total+1 || !strings.HasSuffix(out, fmt.Sprintf("replayed %d, skipped 0\n", total)) {
		t.Fatalf("replay = %d %q %q", code, out, errOut)
	}
	waitRows(t, db, 2*total)
	mu.Lock()
	defer mu.Unlock()
	for i := range total {
		if id := fmt.Sprintf("r%04d", i); posts[id] != 2 {
			t.Fatalf("%s reached the partner %d times, want 2 (once, then the replay)", id, posts[id])
		}
	}
}

// TestParkedNoticeOfARemovedPartnerIsDelivered: a notice parked while its
// partner is paused is not stranded when the partner leaves the config: the
// next serve re-arms it (and says so), and it is delivered as a notice of no
// partner.
func TestParkedNoticeOfARemovedPartnerIsDelivered(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	pay := newAlipayPartner(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "attempts.db")
	cfg := filepath.Join(dir, "notifier.toml")
	writeFile(t, cfg, fmt.Sprintf("[[partner]]\nname = \"shop\"\nurl_prefix = [\"%s/alipay/\"]\n", pay.URL))
	first := spawnServe(t, serveArgs(srv.URL(), db, "--config", cfg)...)
	first.waitSubscribed(rdb, 1)
	if code, _, errOut := runCLI(t, "", "partner", "pause", "--redis", srv.URL(), "shop"); code != 0 {
		t.Fatalf("partner pause = %d %q", code, errOut)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(first.logs.String(), `msg="partner paused`) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // serve says when it has seen the pause
	}
	if code, _, errOut := runCLI(t, "", "enqueue", "--redis", srv.URL(), "--url", pay.URL+"/alipay/notify", "--id", "p1"); code != 0 {
		t.Fatalf("enqueue = %d %q", code, errOut)
	}
	for {
		_, out, _ := runCLI(t, "", "status", "--redis", srv.URL(), "--db", db, "p1")
		if strings.Contains(out, "parked") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("p1 never parked: %q", out)
		}
		time.Sleep(20 * time.Millisecond) // parking happens in serve; polled through the CLI
	}
	if code, out, errOut := runCLI(t, "", "list", "--state", "parked", "--redis", srv.URL()); code != 0 || !strings.HasPrefix(out, "ID\tSTATE\tPARTNER\tATTEMPT\tWHEN\tURL\np1\tparked\t") {
		t.Errorf("list --state parked = %d %q %q; want p1 parked", code, out, errOut)
	}
	first.stop()

	second := spawnServe(t, serveArgs(srv.URL(), db)...) // no partners any more
	t.Cleanup(second.stop)
	rows := waitRows(t, db, 1)
	if rows[0].NoticeID != "p1" || rows[0].Outcome != notifier.Delivered || rows[0].Partner != "" {
		t.Fatalf("attempt %+v, want p1 delivered as a notice of no partner", rows[0])
	}
	if !strings.Contains(second.logs.String(), "no longer configured") {
		t.Errorf("serve did not say it re-armed p1:\n%s", second.logs.String())
	}
	if left := pendingKeys(t, rdb); len(left) != 0 {
		t.Errorf("Redis keeps %v after delivery", left)
	}
}
