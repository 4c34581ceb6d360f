package notifier_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/store"
	"github.com/notifier/notifier/store/redistest"
	"github.com/notifier/notifier/store/storetest"
	"github.com/redis/go-redis/v9"
)

// stack is a real Redis, a real SQLite attempt log and a way to run
// dispatchers on them.
type stack struct {
	t   *testing.T
	srv *redistest.Server
	rdb *redis.Client
	q   *store.Redis
	log *store.SQLite
	// logPath is the attempt log's file.
	logPath string
}

func newStack(t *testing.T, redisConf ...string) *stack {
	t.Helper()
	srv := redistest.Start(t, redisConf...)
	rdb := srv.Client()
	log, logPath := storetest.StartLog(t)
	return &stack{t: t, srv: srv, rdb: rdb, q: store.NewRedis(rdb, "", nil), log: log, logPath: logPath}
}

// dispatcher returns a dispatcher on the stack with test-sized intervals.
func (s *stack) dispatcher(timeout time.Duration) *notifier.Dispatcher {
	dl := notifier.NewDeliverer(timeout, 16)
	return &notifier.Dispatcher{
		Queue: store.NewRedis(s.rdb, "", nil), Events: store.NewRedis(s.rdb, "", nil), Log: s.log, Post: dl.PostWith,
		Concurrency: 16, Lease: timeout + 5*time.Second,
		SweepInterval: 50 * time.Millisecond, SweepGrace: 300 * time.Millisecond, ShutdownGrace: 5 * time.Second,
	}
}

// run starts d until the returned stop is called (or the test ends); stop
// returns how long Run took to return.
func (s *stack) run(d *notifier.Dispatcher) (stop func() time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		if err := d.Run(ctx); err != nil {
			s.t.Errorf("Run: %v", err)
		}
		close(done)
	}()
	var once sync.Once
	var took time.Duration
	stop = func() time.Duration {
		once.Do(func() {
			start := time.Now()
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				s.t.Errorf("Run did not return within 30s of cancel")
			}
			took = time.Since(start)
		})
		return took
	}
	s.t.Cleanup(func() { stop() })
	return stop
}

func (s *stack) enqueue(ns ...notifier.Notice) {
	s.t.Helper()
	errs, err := s.q.Enqueue(context.Background(), ns)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, e := range errs {
		if e != nil {
			s.t.Fatal(e)
		}
	}
}

// rows waits until the log holds at least n attempts and returns them.
func (s *stack) rows(n int) []notifier.Attempt {
	s.t.Helper()
	// Generous: hundreds of attempts under -race on a loaded 2-core machine
	// can take many seconds; the wait ends as soon as the rows are there.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := s.log.Sync(context.Background()); err != nil {
			s.t.Fatal(err)
		}
		rows, err := s.log.Last(context.Background(), notifier.AttemptFilter{}, 0)
		if err != nil {
			s.t.Fatal(err)
		}
		if len(rows) >= n {
			return rows
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("log holds %d attempts, want %d", len(rows), n)
		}
		time.Sleep(5 * time.Millisecond) // attempts are made by other goroutines on Redis's clock
	}
}

// assertRedisEmpty checks that nothing is pending: the only keys left are
// the tombstones of cancelled notices and the dedup sets that remember
// delivered ids for the dedup window.
func (s *stack) assertRedisEmpty() {
	s.t.Helper()
	all, err := s.rdb.Keys(context.Background(), "noticeId*").Result()
	if err != nil {
		s.t.Fatal(err)
	}
	var keys []string
	for _, k := range all {
		if k == "noticeId:wakeflag" || k == "noticeId:partners" || strings.HasPrefix(k, "noticeId:partner:") || strings.HasPrefix(k, "noticeId:ew:") ||
			k == "noticeId:dg" || strings.HasPrefix(k, "noticeId:d:") {
			continue // lives 2 ms after a wake message; a partner's state; an enqueue receipt (a minute); delivered ids
		}
		if v, err := s.rdb.Get(context.Background(), k).Result(); err == nil && strings.HasPrefix(v, "!") && strings.HasPrefix(k, "noticeId:p:") {
			continue
		}
		if k == "noticeId:b" && s.rdb.HGet(context.Background(), k, "n").Val() == "0" {
			continue // the payload table, empty
		}
		keys = append(keys, k)
	}
	if len(keys) != 0 {
		s.t.Fatalf("Redis still holds %v", keys)
	}
}

func notice(id, url, sched string, stamp time.Time) notifier.Notice {
	s, err := backoff.Parse(sched)
	if err != nil {
		panic(err)
	}
	return notifier.Notice{ID: id, URL: url, Body: []byte(`{}`), Schedule: s, Stamp: stamp.Truncate(time.Millisecond)}
}

// counting is a partner that answers each attempt with status(id, n) and
// counts POSTs per (Webhook-Id, Notice-Attempt).
type counting struct {
	*httptest.Server
	mu    sync.Mutex
	posts map[string]int
}

func newCounting(t *testing.T, status func(id string, n int) int) *counting {
	c := &counting{posts: map[string]int{}}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("Webhook-Id")
		n, _ := strconv.Atoi(r.Header.Get("Notice-Attempt"))
		c.mu.Lock()
		c.posts[fmt.Sprintf("%s#%d", id, n)]++
		c.mu.Unlock()
		w.WriteHeader(status(id, n))
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *counting) count(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.posts[key]
}

func TestDispatcherOutcomes(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		sched    string
		outcomes []notifier.Outcome
	}{
		{"DeliveredOn2xx", 204, "0,100ms", []notifier.Outcome{notifier.Delivered}},
		{"GivesUpAfterLastSlot", 500, "0,100ms", []notifier.Outcome{notifier.Retry, notifier.GaveUp}},
		{"GoneIsPermanent", 410, "0,100ms,200ms", []notifier.Outcome{notifier.GaveUp}},
		{"ClientErrorRetries", 404, "0,50ms", []notifier.Outcome{notifier.Retry, notifier.GaveUp}},
		{"RedirectIsAFailure", 302, "0", []notifier.Outcome{notifier.GaveUp}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStack(t)
			p := newCounting(t, func(string, int) int { return tt.status })
			s.run(s.dispatcher(5 * time.Second))
			s.enqueue(notice("n1", p.URL, tt.sched, time.Now()))
			rows := s.rows(len(tt.outcomes))
			if len(rows) != len(tt.outcomes) {
				t.Fatalf("%d attempts, want %d: %+v", len(rows), len(tt.outcomes), rows)
			}
			for i, a := range rows {
				if a.Outcome != tt.outcomes[i] || a.Status != tt.status || a.N != i+1 {
					t.Errorf("attempt %d = %s status %d n %d, want %s status %d", i+1, a.Outcome, a.Status, a.N, tt.outcomes[i], tt.status)
				}
			}
			s.assertRedisEmpty()
		})
	}
}

func TestSweepDeliversWhenTheEventIsLost(t *testing.T) {
	t.Run("TriggerGoneBeforeStart", func(t *testing.T) {
		s := newStack(t)
		p := newCounting(t, func(string, int) int { return 200 })
		n := notice("lost", p.URL, "0", time.Now().Add(-time.Minute))
		s.enqueue(n)
		// The trigger key expired while nobody listened: its event is gone.
		s.rdb.Del(context.Background(), s.q.Keys().Trigger(notifier.Trigger{ID: "lost", Stamp: n.Stamp, N: 1}))
		d := s.dispatcher(5 * time.Second)
		d.WakeInterval = -1 // the sweep alone must find it
		s.run(d)
		if rows := s.rows(1); rows[0].Outcome != notifier.Delivered {
			t.Fatalf("attempt = %+v", rows[0])
		}
		if got := d.Stats().Recovered.Load(); got != 1 {
			t.Fatalf("Recovered = %d, want 1", got)
		}
	})
	t.Run("KeyspaceEventsSwitchedOff", func(t *testing.T) {
		s := newStack(t)
		p := newCounting(t, func(string, int) int { return 200 })
		d := s.dispatcher(5 * time.Second)
		s.run(d)
		s.rdb.ConfigSet(context.Background(), "notify-keyspace-events", "")
		s.enqueue(notice("quiet", p.URL, "100ms", time.Now()))
		a := s.rows(1)[0]
		if a.Outcome != notifier.Delivered {
			t.Fatalf("attempt = %+v", a)
		}
		// Grace 300ms plus one sweep interval, with room for a loaded machine.
		if late := a.Lateness(); late < 300*time.Millisecond || late > 2*time.Second {
			t.Errorf("lateness %v, want the sweep's grace (300ms) to about 2s", late)
		}
		if got := d.Stats().Recovered.Load(); got != 1 {
			t.Fatalf("Recovered = %d, want 1", got)
		}
	})
}

// TestAttemptLongerThanTheLeaseIsPostedOnce: a partner that answers after
// longer than the claim's lease, within its timeout, gets the attempt once:
// the lease is extended to the attempt's timeout before the POST, so the
// sweep does not take the attempt over while the partner is still answering.
func TestAttemptLongerThanTheLeaseIsPostedOnce(t *testing.T) {
	s := newStack(t)
	var mu sync.Mutex
	posts := 0
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		posts++
		mu.Unlock()
		select {
		case <-time.After(2 * time.Second): // three leases of 600ms
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	d := s.dispatcher(5 * time.Second)
	d.Lease, d.LeaseSlack, d.Timeout = 600*time.Millisecond, 600*time.Millisecond, 5*time.Second
	s.run(d)
	s.enqueue(notice("slow", slow.URL, "0", time.Now()))
	if a := s.rows(1)[0]; a.Outcome != notifier.Delivered || a.Duration < 2*time.Second {
		t.Fatalf("attempt = %+v, want delivered after 2s", a)
	}
	mu.Lock()
	defer mu.Unlock()
	if posts != 1 {
		t.Errorf("partner got %d POSTs of one attempt, want 1", posts)
	}
	if lost := d.Stats().Lost.Load(); lost != 0 {
		t.Errorf("Lost = %d, want 0", lost)
	}
}

func TestTwoDispatchersPostEachAttemptOnce(t *testing.T) {
	s := newStack(t)
	// Attempt 1 fails, attempt 2 succeeds: each notice makes two claims.
	p := newCounting(t, func(_ string, n int) int { return map[bool]int{true: 500, false: 200}[n == 1] })
	d1, d2 := s.dispatcher(5*time.Second), s.dispatcher(5*time.Second)
	s.run(d1)
	s.run(d2)
	const total = 300
	stamp := time.Now()
	var ns []notifier.Notice
	for i := range total {
		ns = append(ns, notice(fmt.Sprintf("n%03d", i), p.URL, "0,1s", stamp))
	}
	s.enqueue(ns...)
	s.rows(2 * total)
	for i := range total {
		for n := 1; n <= 2; n++ {
			key := fmt.Sprintf("n%03d#%d", i, n)
			if got := p.count(key); got != 1 {
				t.Errorf("%s POSTed %d times, want 1", key, got)
			}
		}
	}
	if b1, b2 := d1.Stats().Attempts.Load(), d2.Stats().Attempts.Load(); b1+b2 != 2*total {
		t.Errorf("attempts %d + %d, want %d", b1, b2, 2*total)
	}
	s.assertRedisEmpty()
}

func TestShutdown(t *testing.T) {
	t.Run("InFlightAttemptFinishes", func(t *testing.T) {
		s := newStack(t)
		arrived, release := make(chan struct{}), make(chan struct{})
		p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(arrived)
			<-release
		}))
		defer p.Close()
		d := s.dispatcher(5 * time.Second)
		stop := s.run(d)
		s.enqueue(notice("slow", p.URL, "0,1h", time.Now()))
		<-arrived
		stopped := make(chan time.Duration)
		go func() { stopped <- stop() }()
		close(release)
		<-stopped
		if rows := s.rows(1); rows[0].Outcome != notifier.Delivered {
			t.Fatalf("attempt = %+v", rows[0])
		}
		s.assertRedisEmpty()
	})
	t.Run("HungAttemptIsReleasedAfterGrace", func(t *testing.T) {
		s := newStack(t)
		arrived := make(chan struct{}, 1)
		p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Reading the body lets the server notice the client hang up
			// (it starts watching the connection only after that).
			_, _ = io.Copy(io.Discard, r.Body)
			arrived <- struct{}{}
			<-r.Context().Done()
		}))
		defer p.Close()
		d := s.dispatcher(time.Minute)
		d.ShutdownGrace = 200 * time.Millisecond
		stop := s.run(d)
		n := notice("hung", p.URL, "0,1h", time.Now())
		s.enqueue(n)
		<-arrived
		if took := stop(); took > 3*time.Second {
			t.Errorf("shutdown took %v, want about the 200ms grace", took)
		}
		a := s.rows(1)[0]
		if a.Outcome != notifier.Error {
			t.Fatalf("aborted attempt logged as %+v", a)
		}
		// Released: still pending at attempt 1, no lease, trigger re-armed.
		p1, err := s.q.Pending(context.Background(), "hung")
		if err != nil || p1.N != 1 || p1.InFlight {
			t.Fatalf("Pending = %+v, %v; want attempt 1, not in flight", p1, err)
		}
		ts, err := s.q.Overdue(context.Background(), time.Time{}, time.Now(), 10)
		if err != nil || len(ts) != 1 {
			t.Fatalf("released attempt is not due now: %v %v", ts, err)
		}
	})
}

func TestRetryAfterBecomesAScheduledAttempt(t *testing.T) {
	s := newStack(t)
	arrivals := make(chan time.Time, 4)
	p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrivals <- time.Now()
		if r.Header.Get("Notice-Attempt") == "1" {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer p.Close()
	d := s.dispatcher(5 * time.Second)
	s.run(d)
	// Slot 2 at 1s leaves a loaded machine room to start attempt 1 late
	// without skipping it; Retry-After asks for 2s.
	s.enqueue(notice("slow-down", p.URL, "0,1s,20s", time.Now()))
	first, second := <-arrivals, <-arrivals
	if gap := second.Sub(first); gap < 2*time.Second || gap > 4*time.Second {
		t.Errorf("attempt 2 came %v after attempt 1, want Retry-After's 2s (not the 1s slot)", gap)
	}
	rows := s.rows(2)
	if rows[0].Outcome != notifier.Retry || rows[0].Status != 429 || rows[0].Next.Sub(rows[0].Start) < 2*time.Second-time.Millisecond { // the log keeps ms
		t.Errorf("attempt 1 = %+v, want retry with next >= start+2s", rows[0])
	}
	if rows[1].N != 2 || rows[1].Outcome != notifier.Delivered || !rows[1].Due.Equal(rows[0].Next) {
		t.Errorf("attempt 2 = %+v, want n=2 delivered, due at attempt 1's next (%v)", rows[1], rows[0].Next)
	}
	if late := rows[1].Lateness(); late > 500*time.Millisecond {
		t.Errorf("attempt 2 lateness %v is measured from its slot, not from the delayed due", late)
	}
}

// TestCanaryRevivesASilentSubscription covers the failure go-redis cannot
// see: the pub/sub connection stays open but forwards nothing. The canary
// notices, the dispatcher subscribes again, and the resubscribe sweep
// delivers what fired meanwhile.
func TestCanaryRevivesASilentSubscription(t *testing.T) {
	s := newStack(t)
	proxy := redistest.NewProxy(t, s.srv.Socket)
	opt, _ := redis.ParseURL(proxy.URL())
	viaProxy := redis.NewClient(opt)
	defer viaProxy.Close()
	events := store.NewRedis(viaProxy, "", nil)
	events.CanaryInterval, events.CanaryDeadline = 200*time.Millisecond, 300*time.Millisecond

	p := newCounting(t, func(string, int) int { return 200 })
	d := s.dispatcher(5 * time.Second)
	d.Queue, d.Events = s.q, events
	d.SweepInterval = time.Hour // only the resubscribe sweep may recover them
	s.run(d)
	deadline := time.Now().Add(5 * time.Second)
	for proxy.FreezePubSub() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("dispatcher never subscribed through the proxy")
		}
		time.Sleep(5 * time.Millisecond) // waiting for another goroutine's connection
	}
	const total = 50
	var ns []notifier.Notice
	for i := range total {
		ns = append(ns, notice(fmt.Sprintf("q%02d", i), p.URL, "100ms", time.Now()))
	}
	s.enqueue(ns...)
	rows := s.rows(total)
	for _, a := range rows {
		if a.Outcome != notifier.Delivered {
			t.Errorf("attempt %+v", a)
		}
		if late := a.Lateness(); late > 3*time.Second {
			t.Errorf("%s delivered %v late, want within the canary deadline plus a resubscribe", a.NoticeID, late)
		}
	}
	if got := d.Stats().Recovered.Load(); got != total {
		t.Errorf("Recovered = %d, want %d (all events were lost on the frozen connection)", got, total)
	}
}

func TestCatchUpIsRateLimited(t *testing.T) {
	s := newStack(t)
	p := newCounting(t, func(string, int) int { return 200 })
	const total = 30
	var ns []notifier.Notice
	for i := range total {
		// Due a minute ago: the backlog a restart finds.
		ns = append(ns, notice(fmt.Sprintf("b%02d", i), p.URL, "0", time.Now().Add(-time.Minute)))
	}
	s.enqueue(ns...)
	d := s.dispatcher(5 * time.Second)
	d.CatchUpRate = 20 // burst 2
	s.run(d)
	rows := s.rows(total)
	spread := rows[len(rows)-1].Start.Sub(rows[0].Start)
	// 28 attempts beyond the burst at 20/s take 1.4 s at least.
	if spread < 1300*time.Millisecond {
		t.Errorf("%d overdue attempts started within %v, want them spread over >= 1.4s", total, spread)
	}
	if got := d.Stats().CaughtUp.Load(); got < total-2 {
		t.Errorf("CaughtUp = %d, want at least %d re-armed beyond the burst of 2", got, total-2)
	}

	t.Run("OnTimeAttemptsAreNotHeldBack", func(t *testing.T) {
		start := time.Now()
		s.enqueue(notice("fresh", p.URL, "0", start))
		for {
			rows := s.rows(total + 1)
			if a := rows[len(rows)-1]; a.NoticeID == "fresh" {
				if a.Lateness() > time.Second {
					t.Errorf("on-time attempt waited %v", a.Lateness())
				}
				return
			}
		}
	})
}

// TestTransportFaultsAreLogged: faults below HTTP status codes end as
// attempts in the log with a reason, never as a stuck worker.
func TestTransportFaultsAreLogged(t *testing.T) {
	s := newStack(t)
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	}))
	defer hang.Close()
	drip := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("s"))
		w.(http.Flusher).Flush()
		<-r.Context().Done() // the rest of "success" never comes
	}))
	defer drip.Close()
	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(bytes.Repeat([]byte("x"), 1<<20)) // far beyond MaxSnippet
	}))
	defer huge.Close()
	refused := httptest.NewServer(http.NotFoundHandler())
	refusedURL := refused.URL + "/gone?token=secret"
	refused.Close()

	// Long enough for the huge reply to come back on a loaded machine under
	// -race (300ms was not, and 1s once was not with a 10 MiB reply), short
	// enough to keep the test quick.
	d := s.dispatcher(2 * time.Second)
	s.run(d)
	now := time.Now()
	s.enqueue(notice("refused", refusedURL, "0", now), notice("hang", hang.URL, "0", now),
		notice("drip", drip.URL, "0", now), notice("huge", huge.URL, "0", now))
	rows := s.rows(4)
	byID := map[string]notifier.Attempt{}
	for _, a := range rows {
		byID[a.NoticeID] = a
	}
	tests := []struct {
		id      string
		outcome notifier.Outcome
		status  int
		errHas  string
	}{
		{"refused", notifier.GaveUp, 0, "refused"},
		{"hang", notifier.GaveUp, 0, "timed out"},
		{"drip", notifier.GaveUp, 200, "timed out"},
		{"huge", notifier.Delivered, 200, ""},
	}
	for _, tt := range tests {
		a := byID[tt.id]
		if a.Outcome != tt.outcome || a.Status != tt.status || !strings.Contains(a.Error, tt.errHas) {
			t.Errorf("%s: outcome %s status %d error %q; want %s %d containing %q", tt.id, a.Outcome, a.Status, a.Error, tt.outcome, tt.status, tt.errHas)
		}
		if strings.Contains(a.Error, "secret") || strings.Contains(a.URL, "secret") {
			t.Errorf("%s: the query string leaked into the log: %q %q", tt.id, a.URL, a.Error)
		}
		if a.Duration > 5*time.Second {
			t.Errorf("%s: attempt took %v despite the 2s timeout", tt.id, a.Duration)
		}
	}
	if got := len(byID["huge"].Response); got != notifier.MaxSnippet {
		t.Errorf("huge reply stored %d bytes, want %d", got, notifier.MaxSnippet)
	}
}
