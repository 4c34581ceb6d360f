package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/notifier/notifier/store/redistest"
	"github.com/redis/go-redis/v9"
)

// faultPartner counts POSTs per (Webhook-Id, Notice-Attempt). Attempts 1 to
// fails of every notice (fails is one unless set) fail with 503, later ones
// succeed, so each notice needs retries whatever the faults do to its
// timing. done closes when each of the expected ids has been answered 200
// at least once.
type faultPartner struct {
	*httptest.Server
	fails   int
	mu      sync.Mutex
	posts   map[string]int
	perID   map[string]int
	ok      map[string]bool
	total   int
	want    int
	done    chan struct{}
	waiters []waiter
}

type waiter struct {
	n  int
	ch chan struct{}
}

func newFaultPartner(t *testing.T, want int) *faultPartner { return newFailingPartner(t, want, 1) }

// newFailingPartner is a faultPartner that fails attempts 1 to fails of
// each notice.
func newFailingPartner(t *testing.T, want, fails int) *faultPartner {
	p := &faultPartner{fails: fails, posts: map[string]int{}, perID: map[string]int{}, ok: map[string]bool{}, want: want, done: make(chan struct{})}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, n := r.Header.Get("Webhook-Id"), r.Header.Get("Notice-Attempt")
		p.mu.Lock()
		p.posts[id+"#"+n]++
		p.perID[id]++
		p.total++
		k, _ := strconv.Atoi(n)
		success := k > p.fails
		if success && !p.ok[id] {
			p.ok[id] = true
			if len(p.ok) == p.want {
				close(p.done)
			}
		}
		kept := p.waiters[:0]
		for _, w := range p.waiters {
			if p.total >= w.n {
				close(w.ch)
			} else {
				kept = append(kept, w)
			}
		}
		p.waiters = kept
		p.mu.Unlock()
		if !success {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(p.Close)
	return p
}

// atLeast is closed once the partner has seen n POSTs.
func (p *faultPartner) atLeast(n int) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch := make(chan struct{})
	if p.total >= n {
		close(ch)
	} else {
		p.waiters = append(p.waiters, waiter{n, ch})
	}
	return ch
}

// How long the fault tests wait for progress (the partner has seen so
// many POSTs) and for every notice to be delivered. Generous: these tests
// run in parallel under -race on a loaded 2-core machine, thousands of
// attempts each; a wait ends as soon as its condition holds.
const (
	progressWait = 3 * time.Minute
	deliveryWait = 5 * time.Minute
)

func (p *faultPartner) wait(t *testing.T, ch <-chan struct{}, what string, d time.Duration) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		p.mu.Lock()
		defer p.mu.Unlock()
		t.Fatalf("%s: not within %v (%d POSTs, %d of %d notices delivered)", what, d, p.total, len(p.ok), p.want)
	}
}

// duplicates returns how many POSTs repeated an (id, attempt) already POSTed.
func (p *faultPartner) duplicates() (dups int, worst string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, c := range p.posts {
		if c > 1 {
			dups += c - 1
			worst = k
		}
	}
	return dups, worst
}

// enqueueMany enqueues n notices named <prefix><i> through `enqueue --file`.
func enqueueMany(t *testing.T, redisURL, url, prefix string, n int, schedule func(i int) string) {
	t.Helper()
	var b strings.Builder
	for i := range n {
		line, _ := json.Marshal(map[string]any{"id": fmt.Sprintf("%s%05d", prefix, i), "url": url, "body": map[string]int{"i": i}, "schedule": schedule(i)})
		b.Write(line)
		b.WriteByte('\n')
	}
	path := filepath.Join(t.TempDir(), "notices.jsonl")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "", "enqueue", "--redis", redisURL, "--file", path)
	if code != 0 || strings.TrimSpace(out) != fmt.Sprintf("enqueued %d", n) {
		t.Fatalf("enqueue --file = %d %q %q", code, out, errOut)
	}
}

// waitDrained waits until nothing is pending in Redis.
func waitDrained(t *testing.T, rdb *redis.Client) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := pendingKeys(t, rdb)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis still holds %d pending keys, such as %v", len(left), left[:min(len(left), 5)])
		}
		time.Sleep(20 * time.Millisecond) // the last completions race the partner's last reply
	}
}

// pendingKeys lists the keys that hold pending work: everything of the
// default prefix but what remembers ended notices (cancelled tombstones,
// the dedup sets of delivered ids), and
// bookkeeping that outlives notices (the published schedule and partners,
// partner states, the wake flag, enqueue receipts, which live a minute).
func pendingKeys(t *testing.T, rdb *redis.Client) []string {
	t.Helper()
	ctx := context.Background()
	all, err := rdb.Keys(ctx, "noticeId*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, k := range all {
		switch {
		case k == "noticeId:schedule", k == "noticeId:urlpolicy", k == "noticeId:partners", k == "noticeId:wakeflag",
			strings.HasPrefix(k, "noticeId:partner:"), strings.HasPrefix(k, "noticeId:ew:"),
			k == "noticeId:dg", strings.HasPrefix(k, "noticeId:d:"):
			continue
		case strings.HasPrefix(k, "noticeId:p:"):
			if v, err := rdb.Get(ctx, k).Result(); err == nil && strings.HasPrefix(v, "!") {
				continue
			}
		case k == "noticeId:b":
			if rdb.HGet(ctx, k, "n").Val() == "0" {
				continue // the payload table, empty
			}
		}
		left = append(left, k)
	}
	return left
}

// faultRun starts a Redis, a partner expecting total notices and one serve
// (with serveArgs and extra) subscribed to it, stopped when the test ends.
func faultRun(t *testing.T, total int, extra ...string) (*redistest.Server, *redis.Client, *faultPartner, *serveProc) {
	t.Helper()
	srv := redistest.Start(t)
	rdb := srv.Client()
	p := newFaultPartner(t, total)
	s := spawnServe(t, serveArgs(srv.URL(), filepath.Join(t.TempDir(), "attempts.db"), extra...)...)
	t.Cleanup(s.stop)
	s.waitSubscribed(rdb, 1)
	return srv, rdb, p, s
}

func serveArgs(redisURL, db string, extra ...string) []string {
	return append([]string{"--redis", redisURL, "--db", db, "--timeout", "2s", "--lease", "3s", "--concurrency", "32", "--catchup-rate", "0",
		"--allow-private"}, extra...)
}

func always(s string) func(int) string { return func(int) string { return s } }

// TestServeKilledTwice: kill -9 of serve mid-run, twice, with restarts, loses
// no notice; duplicates are bounded by the attempts in flight at each kill.
func TestServeKilledTwice(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	const total, concurrency = 2000, 32
	p := newFaultPartner(t, total)
	args := serveArgs(srv.URL(), filepath.Join(t.TempDir(), "attempts.db"))

	first := spawnServe(t, args...)
	first.waitSubscribed(rdb, 1)
	enqueueMany(t, srv.URL(), p.URL, "k", total, always("0,500ms,10s"))
	p.wait(t, p.atLeast(total/2), "first serve makes half the attempts", progressWait)
	first.kill9()
	second := spawnServe(t, args...)
	second.waitSubscribed(rdb, 1)
	p.wait(t, p.atLeast(total*5/4), "second serve makes progress", progressWait)
	second.kill9()
	third := spawnServe(t, args...)
	t.Cleanup(third.stop)
	p.wait(t, p.done, "every notice delivered after two kills", deliveryWait)
	waitDrained(t, rdb)
	dups, example := p.duplicates()
	t.Logf("%d POSTs for %d notices, %d duplicates (e.g. %s)", p.total, total, dups, example)
	if dups > 2*concurrency {
		t.Errorf("%d duplicate POSTs, want at most %d (the attempts in flight at the two kills)", dups, 2*concurrency)
	}
}

// TestCrashCostsNoAttempt: serve is killed with kill -9 while 3,000
// notices are on a 2-second schedule and restarted 0.3 s later at its
// default catch-up rate, so the backlog is re-armed for later. The partner
// fails each notice's first two attempts: every notice still gets its third
// attempt (and is delivered by it), because lateness that is the sender's
// shifts the slots that remain instead of spending them.
func TestCrashCostsNoAttempt(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	const total, concurrency = 3000, 32
	p := newFailingPartner(t, total, 2)
	db := filepath.Join(t.TempDir(), "attempts.db")
	args := []string{"--redis", srv.URL(), "--db", db, "--timeout", "2s", "--lease", "3s",
		"--concurrency", strconv.Itoa(concurrency), "--allow-private"}
	first := spawnServe(t, args...)
	first.waitSubscribed(rdb, 1)
	enqueueMany(t, srv.URL(), p.URL, "x", total, always("0,500ms,1s,1500ms,2s"))
	p.wait(t, p.atLeast(total/2), "first serve makes a share of the attempts", progressWait)
	first.kill9()
	time.Sleep(300 * time.Millisecond) // the downtime under test, not a wait for a condition
	second := spawnServe(t, args...)
	t.Cleanup(second.stop)
	p.wait(t, p.done, "every notice delivered by its third attempt", deliveryWait)
	waitDrained(t, rdb)
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range total {
		id := fmt.Sprintf("x%05d", i)
		for n := 1; n <= 3; n++ {
			if p.posts[id+"#"+strconv.Itoa(n)] == 0 {
				t.Errorf("%s: attempt %d never POSTed", id, n)
			}
		}
		if p.posts[id+"#4"] != 0 {
			t.Errorf("%s: attempt 4 POSTed after attempt 3 succeeded", id)
		}
	}
	if errs := t.Failed(); !errs {
		second.stop()
		if out := second.logs.String(); strings.Contains(out, "gave up") {
			t.Errorf("serve gave notices up:\n%s", out)
		}
	}
}

// TestRedisKilledAndRestarted: Redis dies mid-run and comes back from its
// AOF; serve stays up, reconnects, sweeps, and loses nothing.
func TestRedisKilledAndRestarted(t *testing.T) {
	const total = 1000
	srv, rdb, p, s := faultRun(t, total)
	enqueueMany(t, srv.URL(), p.URL, "r", total, always("0,1s,10s"))
	p.wait(t, p.atLeast(total/2), "half the first attempts", progressWait)
	srv.Kill()
	outage := time.After(time.Second) // attempts come due while Redis is down
	<-outage
	if err := srv.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.wait(t, p.done, "every notice delivered after the Redis restart", deliveryWait)
	waitDrained(t, rdb)
	select {
	case err := <-s.done:
		t.Fatalf("serve exited during the outage: %v: %s", err, s.logs.String())
	default:
	}
}

// TestPubSubConnectionKilled: CLIENT KILL TYPE pubsub while 1,000 attempts
// come due; go-redis resubscribes, the resubscribe sweep recovers what fired
// meanwhile, and every attempt is made once.
func TestPubSubConnectionKilled(t *testing.T) {
	const total = 1000
	// No process dies here, so no lease needs to run out: a long one keeps
	// an attempt that a loaded machine makes slowly from being taken over
	// (and POSTed again) before it ends.
	srv, rdb, p, _ := faultRun(t, total, "--lease", "30s")
	// First attempts come due over one second, starting 1 s from now.
	enqueueMany(t, srv.URL(), p.URL, "c", total, func(i int) string { return fmt.Sprintf("%dms,%dms", 1000+i, 3000+i) })
	p.wait(t, p.atLeast(100), "attempts start coming due", progressWait)
	killed, err := rdb.ClientKillByFilter(context.Background(), "TYPE", "pubsub").Result()
	if err != nil || killed < 1 {
		t.Fatalf("CLIENT KILL TYPE pubsub = %d, %v", killed, err)
	}
	p.wait(t, p.done, "every notice delivered", deliveryWait)
	waitDrained(t, rdb)
	if dups, example := p.duplicates(); dups != 0 {
		t.Errorf("%d duplicate POSTs (e.g. %s), want 0: no process died", dups, example)
	}
}

// TestThreeServesPostEachAttemptOnce: three serve processes on one Redis,
// 5,000 notices with a retry each: every (id, attempt) is POSTed exactly once.
func TestThreeServesPostEachAttemptOnce(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	const total = 5000
	p := newFaultPartner(t, total)
	dir := t.TempDir()
	for i := range 3 {
		// No serve dies: a long lease keeps a slow attempt on a loaded
		// machine from being taken over by another serve.
		s := spawnServe(t, serveArgs(srv.URL(), filepath.Join(dir, fmt.Sprintf("attempts-%d.db", i)), "--lease", "30s")...)
		t.Cleanup(s.stop)
		s.waitSubscribed(rdb, int64(i+1))
	}
	enqueueMany(t, srv.URL(), p.URL, "m", total, always("0,2s,30s"))
	p.wait(t, p.done, "every notice delivered", deliveryWait)
	waitDrained(t, rdb)
	p.mu.Lock()
	defer p.mu.Unlock()
	for key, c := range p.posts {
		if c != 1 {
			t.Errorf("%s POSTed %d times, want 1", key, c)
		}
	}
	for i := range total {
		if id := fmt.Sprintf("m%05d", i); p.perID[id] != 2 {
			t.Errorf("%s got %d POSTs, want 2 (a failure and its retry)", id, p.perID[id])
		}
	}
}

// TestSecondSignalExitsNow: the first SIGTERM waits for attempts in flight;
// a second one exits at once.
func TestSecondSignalExitsNow(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	arrived := make(chan struct{}, 1)
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // so the server sees the client hang up
		arrived <- struct{}{}
		<-r.Context().Done()
	}))
	defer hang.Close()
	s := spawnServe(t, "--redis", srv.URL(), "--db", filepath.Join(t.TempDir(), "a.db"), "--timeout", "1m", "--shutdown-grace", "1m", "--allow-private")
	s.waitSubscribed(rdb, 1)
	if code, _, errOut := runCLI(t, "", "enqueue", "--redis", srv.URL(), "--url", hang.URL, "--schedule", "0,1h"); code != 0 {
		t.Fatal(errOut)
	}
	<-arrived
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		t.Fatalf("serve exited on the first SIGTERM with an attempt in flight: %v", err)
	case <-time.After(300 * time.Millisecond): // it must still be waiting for the attempt
	}
	// It says at once what it waits for, and how to stop waiting.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(s.logs.String(), "in_flight=1"); {
		if time.Now().After(deadline) {
			t.Fatalf("serve did not say it lets 1 attempt finish: %s", s.logs.String())
		}
		time.Sleep(10 * time.Millisecond) // serve's log, polled
	}
	if !strings.Contains(s.logs.String(), "second signal") {
		t.Errorf("serve did not say a second signal exits at once: %s", s.logs.String())
	}
	start := time.Now()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		s.exited = true
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
			t.Errorf("exit after second signal = %v, want code 130", err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("second signal took %v to exit", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve ignored the second SIGTERM")
	}
}
