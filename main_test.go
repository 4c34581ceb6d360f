package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/notifier/cli"
	"github.com/notifier/notifier/store"
	"github.com/notifier/notifier/store/redistest"
	"github.com/redis/go-redis/v9"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// syncBuffer is a bytes.Buffer safe for a serve goroutine to write while the
// test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The CLI's exit codes, as the tests name them.
const (
	exitError     = cli.ExitError
	exitBadInput  = cli.ExitBadInput
	exitDuplicate = cli.ExitDuplicate
)

// cli runs one notifier command in-process and returns its exit code,
// stdout and stderr.
func runCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), append([]string{"notifier"}, args...), strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// binary is the notifier the tests run as a separate process, as users do
// (and as the fault tests must, to kill it): this test binary itself, under
// the name "notifier" (a symlink), which TestMain turns into the command's
// own main. It is built from the same package with the same flags (-race
// included) as the tests, so no second build and link of the command is
// needed before the first test can start.
var binary string

func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "notifier" {
		main() // run as the notifier binary: serve, enqueue, list, ...
		return
	}
	flag.Parse()
	dir, err := os.MkdirTemp("", "notifier-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "find the test binary:", err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "notifier")
	if err := os.Symlink(self, binary); err != nil {
		fmt.Fprintln(os.Stderr, "link the notifier binary:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// serveProc is a `notifier serve` child process.
type serveProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	logs   *syncBuffer
	done   chan error
	exited bool
}

// startServe runs `notifier serve` as a child process until the test ends
// (then stops it with SIGTERM and expects a clean exit), and waits until it
// has subscribed to expired events.
func startServe(t *testing.T, rdb *redis.Client, args ...string) *syncBuffer {
	t.Helper()
	p := spawnServe(t, args...)
	t.Cleanup(func() { p.stop() })
	p.waitSubscribed(rdb, 1)
	return p.logs
}

// spawnServe starts serve without waiting for anything.
func spawnServe(t *testing.T, args ...string) *serveProc {
	t.Helper()
	p := &serveProc{t: t, logs: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(binary, append([]string{"serve"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("serve %v log:\n%s", args, tailLines(p.logs.String(), 40))
		}
	})
	return p
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// waitSubscribed waits until n serve processes listen on Redis (each
// subscribes to the wake channel right after the expired-event pattern).
func (p *serveProc) waitSubscribed(rdb *redis.Client, n int64) {
	p.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for rdb.PubSubNumSub(context.Background(), "noticeId:wake").Val()["noticeId:wake"] < n {
		if time.Now().After(deadline) {
			p.t.Fatalf("serve never subscribed: %s", p.logs.String())
		}
		select {
		case err := <-p.done:
			p.t.Fatalf("serve exited: %v: %s", err, p.logs.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM and expects a clean exit within 20 s.
func (p *serveProc) stop() {
	p.t.Helper()
	if p.exited {
		return
	}
	p.exited = true
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			p.t.Errorf("serve exited with %v: %s", err, p.logs.String())
		}
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		p.t.Errorf("serve did not stop within 20s of SIGTERM")
	}
}

// kill9 kills serve at once, as a crash would.
func (p *serveProc) kill9() {
	p.exited = true
	_ = p.cmd.Process.Kill()
	<-p.done
}

type arrival struct {
	id, attempt, stamp string
	at                 time.Time
}

// partner is a real HTTP server that fails the first `failures` attempts of
// each notice (after `delay`) and then answers 200.
func partner(t *testing.T, failures int, delay time.Duration) (*httptest.Server, chan arrival) {
	t.Helper()
	arrivals := make(chan arrival, 100)
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		id := r.Header.Get("Webhook-Id")
		mu.Lock()
		seen[id]++
		k := seen[id]
		mu.Unlock()
		arrivals <- arrival{id: id, attempt: r.Header.Get("Notice-Attempt"), stamp: r.Header.Get("Notice-Stamp"), at: at}
		if k <= failures {
			time.Sleep(delay)
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, "try later")
			return
		}
		fmt.Fprint(w, "success")
	}))
	t.Cleanup(srv.Close)
	return srv, arrivals
}

// TestRetriesOnAnchoredSchedule is the core promise end to end: a notice to a
// partner that fails twice arrives at stamp+0, +300ms and +600ms (each later
// by no more than the sender's own lateness before it), through
// trigger keys named noticeId_<id>_<stamp>_<n>, leaving three rows in the
// attempt log, even when the partner takes 200ms to fail.
func TestRetriesOnAnchoredSchedule(t *testing.T) {
	for _, tc := range []struct {
		name  string
		delay time.Duration
	}{
		{"FastFailure", 0},
		{"SlowFailureKeepsAnchor", 200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			rdb := srv.Client()
			db := filepath.Join(t.TempDir(), "attempts.db")
			partnerSrv, arrivals := partner(t, 2, tc.delay)

			ctx := context.Background()
			expired := rdb.PSubscribe(ctx, "__keyevent@0__:expired")
			defer expired.Close()
			if _, err := expired.Receive(ctx); err != nil {
				t.Fatal(err)
			}
			startServe(t, rdb, "--redis", srv.URL(), "--db", db, "--allow-private")

			code, out, errOut := runCLI(t, "", "enqueue", "--redis", srv.URL(), "--id", "order_42",
				"--url", partnerSrv.URL+"/notify?sign=secret", "--data", `{"paid":true}`, "--schedule", "0,300ms,600ms")
			if code != 0 || strings.TrimSpace(out) != "order_42" {
				t.Fatalf("enqueue = %d %q %q", code, out, errOut)
			}
			var got []arrival
			for len(got) < 3 {
				select {
				case a := <-arrivals:
					got = append(got, a)
				case <-time.After(10 * time.Second):
					t.Fatalf("only %d attempts arrived", len(got))
				}
			}
			stampMS, err := strconv.ParseInt(got[0].stamp, 10, 64)
			if err != nil {
				t.Fatalf("Notice-Stamp %q: %v", got[0].stamp, err)
			}
			stamp := time.UnixMilli(stampMS)
			for i, a := range got {
				if a.attempt != strconv.Itoa(i+1) || a.id != "order_42" || a.stamp != got[0].stamp {
					t.Errorf("arrival %d = %+v", i, a)
				}
			}
			// The retries were triggered by expired trigger keys of the exact shape.
			want := map[string]bool{}
			for n := 1; n <= 3; n++ {
				want[fmt.Sprintf("noticeId_order_42_%d_%d", stampMS, n)] = true
			}
			ch := expired.Channel()
			for len(want) > 0 {
				select {
				case m := <-ch:
					delete(want, m.Payload)
				case <-time.After(5 * time.Second):
					t.Fatalf("trigger keys never expired: %v", want)
				}
			}

			rows := waitRows(t, db, 3)
			wantOutcomes := []notifier.Outcome{notifier.Retry, notifier.Retry, notifier.Delivered}
			for i, a := range rows {
				if a.NoticeID != "order_42" || a.N != i+1 || a.Outcome != wantOutcomes[i] {
					t.Errorf("row %d = %+v", i, a)
				}
				if wantStatus := map[bool]int{true: 503, false: 200}[i < 2]; a.Status != wantStatus {
					t.Errorf("row %d status %d, want %d", i, a.Status, wantStatus)
				}
				if a.URL != partnerSrv.URL+"/notify?redacted" {
					t.Errorf("row %d url %q: query string not redacted", i, a.URL)
				}
				// The gap is measured from when the previous attempt
				// started, never from when it failed: a partner that takes
				// 200ms to fail does not move the next attempt, while the
				// sender's own lateness (a few ms here) does.
				slot := stamp.Add(time.Duration(i) * 300 * time.Millisecond)
				want := slot
				if i > 0 {
					if shifted := rows[i-1].Start.Add(300 * time.Millisecond); shifted.After(want) {
						want = shifted
					}
					if !rows[i-1].Next.Equal(a.Due) {
						t.Errorf("row %d says next at %v, row %d is due %v", i-1, rows[i-1].Next, i, a.Due)
					}
				}
				if d := a.Due.Sub(want); d < -time.Millisecond || d > time.Millisecond {
					t.Errorf("row %d due stamp+%v, want stamp+%v: max(its slot, the previous start + 300ms)", i, a.Due.Sub(stamp), want.Sub(stamp))
				}
				// Generous bounds for a shared 2-core machine under -race.
				late := got[i].at.Sub(a.Due)
				t.Logf("attempt %d at stamp+%v, due stamp+%v (late %v)", i+1, got[i].at.Sub(stamp), a.Due.Sub(stamp), late)
				if late < 0 || late > 150*time.Millisecond {
					t.Errorf("attempt %d arrived %v after its due time, want within [0, 150ms]", i+1, late)
				}
			}
			if !rows[2].Next.IsZero() {
				t.Errorf("delivered row says next at %v", rows[2].Next)
			}
			if left := pendingKeys(t, rdb); len(left) != 0 {
				t.Errorf("Redis keeps %v after delivery", left)
			}
			if n := rdb.Exists(ctx, "noticeId:p:order_42").Val(); n != 0 {
				t.Errorf("the payload outlives the delivery")
			}
			if n := rdb.Exists(ctx, "noticeId:dg").Val(); n != 1 {
				t.Errorf("no dedup directory after a delivery: the id is not remembered")
			}
			code, _, errOut = runCLI(t, "", "enqueue", "--redis", srv.URL(), "--id", "order_42", "--url", partnerSrv.URL, "--data", "{}")
			if code != 3 || !strings.Contains(errOut, "already delivered") {
				t.Errorf("enqueue of the delivered id = %d %q, want exit 3 and 'already delivered'", code, errOut)
			}

			code, out, errOut = runCLI(t, "", "tail", "--db", db)
			if code != 0 {
				t.Fatalf("tail = %d %s", code, errOut)
			}
			normalized := normalizeTail(out, partnerSrv.URL)
			golden(t, "tail_e2e.golden", normalized)

			code, out, _ = runCLI(t, "", "status", "--redis", srv.URL(), "--db", db, "order_42")
			if code != 0 || !strings.Contains(out, "state:    delivered") || !strings.Contains(out, "attempts: 3") {
				t.Errorf("status = %d\n%s", code, out)
			}
		})
	}
}

func waitRows(t *testing.T, db string, n int) []notifier.Attempt {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second) // a loaded 2-core machine: the log may lag serve by many seconds
	for {
		if log, err := store.OpenSQLiteReadOnly(db); err == nil {
			rows, err := log.Last(context.Background(), notifier.AttemptFilter{}, 0)
			log.Close()
			if err == nil && len(rows) >= n {
				return rows
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("attempt log never reached %d rows in 60s", n)
		}
		time.Sleep(10 * time.Millisecond) // another process's writer: polling is what tail does too
	}
}

var (
	reTime = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`)
	reDur  = regexp.MustCompile(`(late|took)=[^ ]+`)
)

// normalizeTail replaces what changes from run to run (times, durations,
// the partner's port) so the rest of the format can be compared.
func normalizeTail(out, partnerURL string) string {
	out = reTime.ReplaceAllString(out, "TIME")
	out = reDur.ReplaceAllString(out, "$1=D")
	return strings.ReplaceAll(out, partnerURL, "http://partner")
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s:\n--- got\n%s--- want\n%s", path, got, want)
	}
}
