package notifier_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/redis/go-redis/v9"
)

// replying is a partner that answers attempt n of every notice with
// replies[n-1] (the last one again beyond the list).
type reply struct {
	status int
	body   string
}

func newReplying(t *testing.T, replies ...reply) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.Header.Get("Notice-Attempt"))
		rp := replies[min(max(n, 1), len(replies))-1]
		w.WriteHeader(rp.status)
		io.WriteString(w, rp.body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestSuccessRulesOverHTTP: a reply that does not meet the notice's (or its
// partner's) success rule is a failed attempt, logged with its snippet, and
// the next attempt that meets it delivers the notice.
func TestSuccessRulesOverHTTP(t *testing.T) {
	const wechatFail = `<xml><return_code><![CDATA[FAIL]]></return_code><return_msg>sign error</return_msg></xml>`
	const wechatOK = `<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>`
	tests := []struct {
		name        string
		rule        string // the notice's rule
		partnerRule string // the partner's rule (partner matched by URL prefix)
		replies     []reply
		outcomes    []notifier.Outcome
	}{
		{"AlipayBody", "body:success", "", []reply{{200, "fail"}, {200, "success\n"}}, []notifier.Outcome{notifier.Retry, notifier.Delivered}},
		{"AlipayBodyFromPartner", "", "body:success", []reply{{200, "ok"}, {200, "success"}}, []notifier.Outcome{notifier.Retry, notifier.Delivered}},
		{"NoticeRuleBeatsPartner", "status:200", "body:success", []reply{{200, "anything"}}, []notifier.Outcome{notifier.Delivered}},
		{"WeChatXML", "wechat", "", []reply{{200, wechatFail}, {200, wechatOK}}, []notifier.Outcome{notifier.Retry, notifier.Delivered}},
		{"WeChatNeeds2xx", "wechat", "", []reply{{500, wechatOK}, {200, wechatOK}}, []notifier.Outcome{notifier.Retry, notifier.Delivered}},
		{"StatusSet", "status:204", "", []reply{{200, ""}, {204, ""}}, []notifier.Outcome{notifier.Retry, notifier.Delivered}},
		{"Regex", `regex:"code":\s*0\b`, "", []reply{{200, `{"code": 10}`}, {200, `{"code": 0}`}}, []notifier.Outcome{notifier.Retry, notifier.Delivered}},
		{"WrongBodyOnLastSlotGivesUp", "body:success", "", []reply{{200, "fail"}}, []notifier.Outcome{notifier.Retry, notifier.GaveUp}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStack(t)
			srv := newReplying(t, tt.replies...)
			d := s.dispatcher(5 * time.Second)
			p := &notifier.Partner{Name: "p1", Prefixes: []string{srv.URL + "/"}}
			if tt.partnerRule != "" {
				p.Success = mustRule(t, tt.partnerRule)
			}
			d.Partners = notifier.NewPartners([]*notifier.Partner{p}, 0)
			s.run(d)
			n := notice("n1", srv.URL+"/notify", "0,50ms", time.Now())
			if tt.rule != "" {
				n.Success = mustRule(t, tt.rule)
			}
			s.enqueue(n)
			rows := s.rows(len(tt.outcomes))
			for i, want := range tt.outcomes {
				if rows[i].Outcome != want {
					t.Fatalf("attempt %d: %s, want %s: %+v", i+1, rows[i].Outcome, want, rows)
				}
				if rows[i].Partner != "p1" {
					t.Errorf("attempt %d logged partner %q, want p1", i+1, rows[i].Partner)
				}
			}
			first := rows[0]
			if first.Outcome != notifier.Delivered && first.Status == 200 {
				if !strings.Contains(first.Error, "success rule") || first.Response != tt.replies[0].body {
					t.Errorf("failed 200 logged as error=%q response=%q; want the rule's reason and the reply", first.Error, first.Response)
				}
			}
			s.assertRedisEmpty()
		})
	}
}

// TestSignedAttemptsVerify: every attempt carries one Standard Webhooks
// signature per secret (the notice's and the partner's), over that
// attempt's own timestamp, which the partner verifies; no secret reaches
// the attempt log's file.
func TestSignedAttemptsVerify(t *testing.T) {
	const noticeKey = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	const partnerKey = "whsec_c2VjcmV0LWtleS1vZi1hLXBhcnRuZXItMzItYnl0ZXM="
	noticeSecret, err := notifier.ParseSecret(noticeKey)
	if err != nil {
		t.Fatal(err)
	}
	partnerSecret, err := notifier.ParseSecret(partnerKey)
	if err != nil {
		t.Fatal(err)
	}
	type seen struct {
		ts          string
		sigs        int
		byNotice    error
		byPartner   error
		byWrongBody error
	}
	var mu sync.Mutex
	var got []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		sec, _ := strconv.ParseInt(r.Header.Get("Webhook-Timestamp"), 10, 64)
		ts, id, sig := time.Unix(sec, 0), r.Header.Get("Webhook-Id"), r.Header.Get("Webhook-Signature")
		now := time.Now()
		mu.Lock()
		got = append(got, seen{
			ts: r.Header.Get("Webhook-Timestamp"), sigs: len(strings.Fields(sig)),
			byNotice:    notifier.Verify(sig, []notifier.Secret{noticeSecret}, id, ts, body, now, 5*time.Minute),
			byPartner:   notifier.Verify(sig, []notifier.Secret{partnerSecret}, id, ts, body, now, 5*time.Minute),
			byWrongBody: notifier.Verify(sig, []notifier.Secret{noticeSecret}, id, ts, append(body, ' '), now, 5*time.Minute),
		})
		n := len(got)
		mu.Unlock()
		if n == 1 {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	t.Cleanup(srv.Close)

	s := newStack(t)
	d := s.dispatcher(5 * time.Second)
	d.Partners = notifier.NewPartners([]*notifier.Partner{{Name: "signed", Prefixes: []string{srv.URL}, Secrets: []notifier.Secret{partnerSecret}}}, 0)
	s.run(d)
	n := notice("sig-1", srv.URL+"/hook", "0,1100ms", time.Now())
	n.Body = []byte(`{"test": 2432232314}`)
	n.Secrets = []notifier.Secret{noticeSecret}
	s.enqueue(n)
	rows := s.rows(2)
	if rows[1].Outcome != notifier.Delivered {
		t.Fatalf("outcomes %v, %v", rows[0].Outcome, rows[1].Outcome)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, g := range got {
		if g.sigs != 2 || g.byNotice != nil || g.byPartner != nil {
			t.Errorf("attempt %d: %d signatures, verify by notice secret: %v, by partner secret: %v", i+1, g.sigs, g.byNotice, g.byPartner)
		}
		if !errors.Is(g.byWrongBody, notifier.ErrBadSignature) {
			t.Errorf("attempt %d: a changed body verified: %v", i+1, g.byWrongBody)
		}
	}
	if got[0].ts == got[1].ts {
		t.Errorf("both attempts signed with timestamp %s; each attempt needs its own", got[0].ts)
	}
	// The attempt log's file, archive included, holds neither secret.
	if err := s.log.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"attempts.db", "attempts.db-wal"} {
		b, _ := os.ReadFile(filepath.Join(filepath.Dir(s.logPath), name))
		for _, key := range []string{noticeKey, partnerKey, strings.TrimPrefix(noticeKey, "whsec_")} {
			if bytes.Contains(b, []byte(key)) {
				t.Errorf("%s contains a secret", name)
			}
		}
	}
}

// TestSlowPartnerDoesNotStarveOthers: one partner hangs, the other answers
// at once. The hanging one holds at most its limit of workers; the other's
// notices keep their latency.
func TestSlowPartnerDoesNotStarveOthers(t *testing.T) {
	release := make(chan struct{})
	var inFlight, most atomic.Int64
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	fast := newReplying(t, reply{200, "ok"})

	s := newStack(t)
	d := s.dispatcher(10 * time.Second)
	d.Concurrency = 16
	d.Partners = notifier.NewPartners([]*notifier.Partner{
		{Name: "slow", Prefixes: []string{slow.URL}, MaxConcurrent: 4},
		{Name: "fast", Prefixes: []string{fast.URL}},
	}, 8)
	s.run(d)
	t.Cleanup(func() { close(release) }) // before the dispatcher stops: cleanups run last first
	now := time.Now()
	var ns []notifier.Notice
	for i := range 60 {
		ns = append(ns, notice("slow-"+strconv.Itoa(i), slow.URL+"/x", "0", now))
	}
	s.enqueue(ns...)
	// Let the slow partner's notices take their slots first.
	deadline := time.Now().Add(5 * time.Second)
	for inFlight.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling the partner's own counter
	}
	ns = ns[:0]
	now = time.Now()
	for i := range 40 {
		ns = append(ns, notice("fast-"+strconv.Itoa(i), fast.URL+"/x", "0", now))
	}
	s.enqueue(ns...)
	rows := s.rows(40)
	var worst time.Duration
	for _, r := range rows {
		if r.Partner != "fast" {
			t.Fatalf("a slow partner's attempt ended: %+v", r)
		}
		if r.Outcome != notifier.Delivered {
			t.Fatalf("fast notice %s: %s", r.NoticeID, r.Outcome)
		}
		worst = max(worst, r.Lateness())
	}
	// The hanging partner holds its 4 workers for 10 s; starving the fast
	// one would make it that late. 2 s leaves room for -race on 2 shared cores.
	if worst > 2*time.Second {
		t.Errorf("fast partner's worst lateness %s with a hanging partner; want well under 2s", worst)
	}
	if m := most.Load(); m > 4 {
		t.Errorf("hanging partner had %d attempts in flight, limit 4", m)
	}
	if d.Stats().Deferred.Load() == 0 {
		t.Error("no attempt was deferred; the limit was not reached")
	}
}

// TestPartnerPausesAfterFailuresAndResumes: after PauseAfter failed
// attempts in a row the partner is paused, its notices are parked (no more
// requests), and resuming sends them all.
func TestPartnerPausesAfterFailuresAndResumes(t *testing.T) {
	var ok atomic.Bool
	var posts atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
		if !ok.Load() {
			w.WriteHeader(http.StatusBadGateway)
		}
	}))
	t.Cleanup(srv.Close)
	s := newStack(t)
	d := s.dispatcher(5 * time.Second)
	d.Pauser = s.q
	d.Partners = notifier.NewPartners([]*notifier.Partner{{Name: "flaky", Prefixes: []string{srv.URL}, PauseAfter: 3}}, 0)
	publishPartners(t, s, d.Partners) // as serve does
	s.run(d)
	var ns []notifier.Notice
	for i := range 5 {
		ns = append(ns, notice("pz-"+strconv.Itoa(i), srv.URL+"/n", "0,200ms,400ms,600ms", time.Now()))
	}
	s.enqueue(ns...)
	ctx := context.Background()
	waitFor(t, 10*time.Second, "5 notices parked", func() bool {
		st, err := s.q.PartnerStates(ctx, []string{"flaky"})
		return err == nil && st["flaky"].Paused && st["flaky"].Parked == 5
	})
	before := posts.Load()
	if before < 3 {
		t.Fatalf("%d requests before the pause, want at least 3", before)
	}
	st, _ := s.q.State(ctx, "pz-0")
	if st != notifier.StateParked {
		t.Errorf("state of a parked notice = %q", st)
	}
	ok.Store(true)
	// Usually 5; fewer if the dispatcher's own poll saw the resume first
	// and re-armed some itself. Delivery below is what counts.
	if n, err := s.q.Resume(ctx, "flaky"); err != nil || n > 5 {
		t.Fatalf("Resume = %d, %v; want at most 5", n, err)
	}
	waitFor(t, 10*time.Second, "every notice delivered after resume", func() bool {
		if err := s.log.Sync(ctx); err != nil {
			return false
		}
		rows, _ := s.log.Last(ctx, notifier.AttemptFilter{Outcome: notifier.Delivered}, 0)
		return len(rows) == 5
	})
	s.assertRedisEmpty()
}

// TestGoneParksWhenConfigured: with PauseOnGone, 410 pauses the partner and
// parks the notice instead of giving it up.
func TestGoneParksWhenConfigured(t *testing.T) {
	srv := newReplying(t, reply{410, "gone"})
	s := newStack(t)
	d := s.dispatcher(5 * time.Second)
	d.Pauser = s.q
	d.Partners = notifier.NewPartners([]*notifier.Partner{{Name: "gone", Prefixes: []string{srv.URL}, PauseOnGone: true}}, 0)
	s.run(d)
	s.enqueue(notice("g1", srv.URL+"/n", "0,1s", time.Now()))
	rows := s.rows(1)
	if rows[0].Outcome == notifier.GaveUp || !strings.Contains(rows[0].Error, "paused") {
		t.Fatalf("410 logged as %s %q; want the partner paused and the notice kept", rows[0].Outcome, rows[0].Error)
	}
	st, err := s.q.PartnerStates(context.Background(), []string{"gone"})
	if err != nil || !st["gone"].Paused || st["gone"].Parked != 1 {
		t.Fatalf("partner state %+v, %v; want paused with 1 parked", st["gone"], err)
	}
}

// TestGiveUpAlertIsSentOnce: a given-up notice makes one alert POST, and a
// failing alert receiver is not retried.
func TestGiveUpAlertIsSentOnce(t *testing.T) {
	var alerts atomic.Int64
	got := make(chan notifier.GiveUpAlert, 10)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		alerts.Add(1)
		var a notifier.GiveUpAlert
		if err := json.NewDecoder(r.Body).Decode(&a); err == nil {
			got <- a
		}
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(receiver.Close)
	partner := newReplying(t, reply{500, "no"})
	s := newStack(t)
	al := notifier.NewAlerter(receiver.URL, time.Second, &notifier.Guard{AllowPrivate: true}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- al.Run(ctx) }()
	d := s.dispatcher(5 * time.Second)
	d.GaveUp = al.Notify
	s.run(d)
	s.enqueue(notice("alert-1", partner.URL+"/n?token=abc", "0", time.Now()))
	select {
	case a := <-got:
		if a.ID != "alert-1" || a.Event != "notice.gave_up" || a.Status != 500 || strings.Contains(a.URL, "abc") {
			t.Errorf("alert %+v", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no alert")
	}
	cancel()
	<-done
	if n := alerts.Load(); n != 1 {
		t.Errorf("%d alert POSTs, want exactly 1 (no retries)", n)
	}
}

// TestRateLimitSpacesAttempts: a partner limited to 10 attempts per second
// gets 15 notices due at once over about 1.4 s, all delivered.
func TestRateLimitSpacesAttempts(t *testing.T) {
	var mu sync.Mutex
	var arrivals []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrivals = append(arrivals, time.Now())
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	s := newStack(t)
	d := s.dispatcher(5 * time.Second)
	d.Partners = notifier.NewPartners([]*notifier.Partner{{Name: "rl", Prefixes: []string{srv.URL}, Rate: 10, Burst: 1}}, 0)
	s.run(d)
	var ns []notifier.Notice
	for i := range 15 {
		ns = append(ns, notice("rl-"+strconv.Itoa(i), srv.URL+"/n", "0", time.Now()))
	}
	s.enqueue(ns...)
	rows := s.rows(15)
	for _, r := range rows {
		if r.Outcome != notifier.Delivered {
			t.Fatalf("%s: %s", r.NoticeID, r.Outcome)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if span := arrivals[len(arrivals)-1].Sub(arrivals[0]); span < 1200*time.Millisecond {
		t.Errorf("15 attempts at 10/s took %s, want at least 1.2s", span)
	}
	if len(arrivals) != 15 {
		t.Errorf("%d requests, want 15", len(arrivals))
	}
}

// TestIdempotentEnqueueAndCancel: an id that is pending or was delivered
// is refused (ErrDuplicate, saying which); Resend replaces a delivered one;
// a given-up or cancelled id may be enqueued again; a cancelled notice is
// never sent.
func TestIdempotentEnqueueAndCancel(t *testing.T) {
	srv := newReplying(t, reply{200, ""})
	s := newStack(t)
	ctx := context.Background()
	later := notice("c1", srv.URL, "1h", time.Now())
	s.enqueue(later)
	_, err := firstErr(s.q.Enqueue(ctx, []notifier.Notice{later}))
	if !errors.Is(err, notifier.ErrDuplicate) || !strings.Contains(err.Error(), "pending") {
		t.Fatalf("second enqueue of a pending id: %v", err)
	}
	if err := s.q.Cancel(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.q.State(ctx, "c1"); st != notifier.StateCancelled {
		t.Errorf("state after cancel = %q", st)
	}
	if err := s.q.Cancel(ctx, "c1"); !errors.Is(err, notifier.ErrEnded) {
		t.Errorf("second cancel: %v, want ErrEnded", err)
	}
	if n := s.rdb.Keys(ctx, "noticeId_c1_*").Val(); len(n) != 0 {
		t.Errorf("trigger keys left after cancel: %v", n)
	}
	s.run(s.dispatcher(5 * time.Second))
	s.enqueue(notice("d1", srv.URL, "0", time.Now()))
	s.rows(1)
	_, err = firstErr(s.q.Enqueue(ctx, []notifier.Notice{notice("d1", srv.URL, "0", time.Now())}))
	if !errors.Is(err, notifier.ErrDuplicate) || !strings.Contains(err.Error(), "delivered") {
		t.Fatalf("enqueue of a delivered id: %v", err)
	}
	if _, err := firstErr(s.q.Resend(ctx, []notifier.Notice{notice("d1", srv.URL, "0", time.Now())})); err != nil {
		t.Fatalf("Resend of a delivered id: %v", err)
	}
	s.rows(2)
	// Cancelled ids are free again.
	if _, err := firstErr(s.q.Enqueue(ctx, []notifier.Notice{notice("c1", srv.URL, "0", time.Now())})); err != nil {
		t.Fatalf("enqueue of a cancelled id: %v", err)
	}
	rows := s.rows(3)
	if rows[2].NoticeID != "c1" || rows[2].Outcome != notifier.Delivered {
		t.Errorf("third attempt %+v", rows[2])
	}
}

func firstErr(errs []error, err error) (int, error) {
	if err != nil {
		return 0, err
	}
	return 0, errs[0]
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // state lives in Redis and SQLite, which have no change signal
	}
}

// TestExampleConfigLoads keeps deploy/notifier.toml, the documented
// example, valid.
func TestExampleConfigLoads(t *testing.T) {
	c, err := notifier.LoadConfig("../deploy/notifier.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Partners) != 3 || c.AlertURL == "" {
		t.Fatalf("%d partners, alert %q", len(c.Partners), c.AlertURL)
	}
	a := c.Partners[0]
	if a.Name != "merchant-a" || a.Success.String() != "body:success" || len(a.Schedule) != 8 || a.Rate != 50 || !a.PauseOnGone {
		t.Errorf("merchant-a = %+v", a)
	}
	if b := c.Partners[1]; len(b.Secrets) != 2 || b.Jitter != 0.1 {
		t.Errorf("saas-b has %d secrets, jitter %v", len(b.Secrets), b.Jitter)
	}
	ps := notifier.NewPartners(c.Partners, 0)
	n := notifier.Notice{URL: "https://merchant-w.example.com/wxpay/cb?x=1"}
	if p := ps.Resolve(&n); p == nil || p.Name != "merchant-w" {
		t.Errorf("Resolve by prefix = %v", p)
	}
}

// TestResumeLeavesAttemptsParkedAfterIt: Resume re-arms what was parked up
// to its own start; an attempt parked after that (the partner paused again)
// stays parked.
func TestResumeLeavesAttemptsParkedAfterIt(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	clock := time.Now()
	s.q.Now = func() time.Time { return clock }
	s.enqueue(notice("early", "http://p.example/x", "1h", time.Now()), notice("late", "http://p.example/x", "1h", time.Now()))
	// Park both through the store, "early" before the resume starts and
	// "late" after, by their parked scores.
	for _, id := range []string{"early", "late"} {
		p, err := s.q.Pending(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		member := s.q.Keys().Member(notifier.Trigger{ID: id, Stamp: p.Notice.Stamp, N: 1})
		score := clock.Add(-time.Minute)
		if id == "late" {
			score = clock.Add(time.Minute)
		}
		if err := s.rdb.ZRem(ctx, s.q.Keys().Due(), member).Err(); err != nil {
			t.Fatal(err)
		}
		if err := s.rdb.ZAdd(ctx, s.q.Keys().Parked("px"), redis.Z{Score: float64(score.UnixMilli()), Member: member}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.q.Resume(ctx, "px")
	if err != nil || n != 1 {
		t.Fatalf("Resume = %d, %v; want 1 (only the attempt parked before it)", n, err)
	}
	if left := s.rdb.ZCard(ctx, s.q.Keys().Parked("px")).Val(); left != 1 {
		t.Errorf("%d attempts still parked, want 1", left)
	}
}

func publishPartners(t *testing.T, s *stack, ps *notifier.Partners) {
	t.Helper()
	sums, err := ps.Summaries()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.q.PublishPartners(context.Background(), sums); err != nil {
		t.Fatal(err)
	}
}
