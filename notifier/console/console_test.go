package console_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/notifier/console"
	"github.com/notifier/notifier/store"
	"github.com/notifier/notifier/store/redistest"
	"github.com/notifier/notifier/store/storetest"
	"github.com/redis/go-redis/v9"
)

const (
	token     = "full-token-0123456789abcdef"
	readToken = "read-token-0123456789abcdef"
	secret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
)

// env is a console over real HTTP on a private redis-server and a real
// attempt log file.
type env struct {
	t   *testing.T
	rdb *redis.Client
	q   *store.Redis
	log *store.SQLite
	url string
	// later moves the console's clock forward (nanoseconds).
	later atomic.Int64
	// transport trusts the test server's certificate.
	transport http.RoundTripper
}

func newEnv(t *testing.T, tls bool, opts ...func(*console.Options)) *env {
	t.Helper()
	srv := redistest.Start(t)
	log, _ := storetest.StartLog(t)
	ctx := context.Background()
	e := &env{t: t, rdb: srv.Client(), log: log}
	e.q = store.NewRedis(e.rdb, "", nil)
	// As serve does: the console's partner, and where parked notices are.
	if err := e.q.PublishPartners(ctx, map[string]string{"shop": `{"name":"shop","signed":false}`}); err != nil {
		t.Fatal(err)
	}
	o := console.Options{Queue: e.q, Log: log, Token: token, ReadToken: readToken,
		Partners: func() []string { return []string{"shop"} },
		Now:      func() time.Time { return time.Now().Add(time.Duration(e.later.Load())) }}
	for _, f := range opts {
		f(&o)
	}
	h, err := console.New(o)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ui/", h)
	hs := httptest.NewUnstartedServer(mux)
	if tls {
		hs.StartTLS()
	} else {
		hs.Start()
	}
	t.Cleanup(hs.Close)
	e.url, e.transport = hs.URL, hs.Client().Transport
	return e
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects, so tests see the 303s.
type browser struct {
	e *env
	c *http.Client
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Transport: e.transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &browser{e: e, c: c}
}

// login logs b in with tok and fails the test unless it worked.
func (e *env) login(tok string) *browser {
	e.t.Helper()
	b := e.browser()
	resp, body := b.post("/ui/login", url.Values{"token": {tok}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		e.t.Fatalf("login: %d %s, want 303 to /ui/", resp.StatusCode, body)
	}
	return b
}

func (b *browser) do(req *http.Request) (*http.Response, string) {
	b.e.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	return resp, string(body)
}

func (b *browser) get(path string) (*http.Response, string) {
	b.e.t.Helper()
	req, err := http.NewRequest("GET", b.e.url+path, nil)
	if err != nil {
		b.e.t.Fatal(err)
	}
	return b.do(req)
}

// page GETs path and fails the test unless it is a 200.
func (b *browser) page(path string) string {
	b.e.t.Helper()
	resp, body := b.get(path)
	if resp.StatusCode != http.StatusOK {
		b.e.t.Fatalf("GET %s: %d, want 200: %s", path, resp.StatusCode, body)
	}
	return body
}

func (b *browser) post(path string, form url.Values) (*http.Response, string) {
	b.e.t.Helper()
	req, err := http.NewRequest("POST", b.e.url+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var reCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the CSRF token from the forms of a page.
func (b *browser) csrf() string {
	b.e.t.Helper()
	m := reCSRF.FindStringSubmatch(b.page("/ui/"))
	if m == nil {
		b.e.t.Fatal("no CSRF token in the page")
	}
	return m[1]
}

// enqueue stores a notice to an unreachable partner on schedule s, with a
// secret and a URL query that must never be shown.
func (e *env) enqueue(id, partner, s string) notifier.Notice {
	e.t.Helper()
	sched, err := backoff.Parse(s)
	if err != nil {
		e.t.Fatal(err)
	}
	sec, err := notifier.ParseSecret(secret)
	if err != nil {
		e.t.Fatal(err)
	}
	n := notifier.Notice{ID: id, URL: "http://127.0.0.1:9/hook?sign=s3cret", Body: []byte(`{"card":"4111"}`),
		Schedule: sched, Stamp: time.Now().Truncate(time.Millisecond), Partner: partner, Secrets: []notifier.Secret{sec}}
	errs, err := e.q.Enqueue(context.Background(), []notifier.Notice{n})
	if err == nil {
		err = errs[0]
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// record writes a to the attempt log and waits until it is committed.
func (e *env) record(a notifier.Attempt) {
	e.t.Helper()
	ctx := context.Background()
	if err := e.log.Record(ctx, a); err != nil {
		e.t.Fatal(err)
	}
	if err := e.log.Sync(ctx); err != nil {
		e.t.Fatal(err)
	}
}

// ended archives a notice that ended with outcome o after its only attempt.
func (e *env) ended(id, partner string, o notifier.Outcome, response string) notifier.Notice {
	e.t.Helper()
	stamp := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	n := notifier.Notice{ID: id, URL: "http://127.0.0.1:9/hook?sign=s3cret", Body: []byte(`{"card":"4111"}`),
		Schedule: backoff.Schedule{0}, Stamp: stamp, Partner: partner}
	status := map[notifier.Outcome]int{notifier.Delivered: 200, notifier.GaveUp: 500}[o]
	e.record(notifier.Attempt{NoticeID: id, Stamp: stamp, N: 1, Due: stamp, Start: stamp.Add(3 * time.Millisecond),
		Duration: 40 * time.Millisecond, URL: notifier.RedactURL(n.URL), Status: status, Outcome: o,
		Response: response, Partner: partner, Ended: &n})
	return n
}

// park enqueues a notice of partner and parks its first attempt, as serve
// does while the partner is paused.
func (e *env) park(id, partner string) {
	e.t.Helper()
	ctx := context.Background()
	n := e.enqueue(id, partner, "0")
	_, jobs, err := e.q.Claim(ctx, []notifier.Trigger{{ID: id, Stamp: n.Stamp, N: 1}}, time.Minute)
	if err != nil || len(jobs) != 1 {
		e.t.Fatalf("claim %s: %v, %d jobs", id, err, len(jobs))
	}
	if ok, err := e.q.Park(ctx, jobs[0], partner); err != nil || !ok {
		e.t.Fatalf("park %s: %v %v", id, ok, err)
	}
}

func state(t *testing.T, q *store.Redis, id string) notifier.State {
	t.Helper()
	st, err := q.State(context.Background(), id)
	if err != nil {
		return notifier.State(err.Error())
	}
	return st
}

func TestLogin(t *testing.T) {
	e := newEnv(t, false)

	t.Run("GoodTokenSetsAnHttpOnlyStrictCookie", func(t *testing.T) {
		b := e.browser()
		resp, _ := b.post("/ui/login", url.Values{"token": {token}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("status %d, want 303", resp.StatusCode)
		}
		cookies := resp.Cookies()
		if len(cookies) != 1 {
			t.Fatalf("cookies %v, want one", cookies)
		}
		c := cookies[0]
		if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure || c.Path != "/ui/" || c.MaxAge <= 0 {
			t.Errorf("cookie %s: want HttpOnly, SameSite=Strict, not Secure over http, Path=/ui/, a Max-Age", c)
		}
		if strings.Contains(c.Value, token) || strings.Contains(c.Value, token[:12]) {
			t.Errorf("cookie %q holds the token", c.Value)
		}
		if body := b.page("/ui/"); !strings.Contains(body, `data-access="full"`) {
			t.Error("the notices page does not say full access")
		}
	})

	t.Run("WrongTokenIsRefused", func(t *testing.T) {
		for _, tok := range []string{"", token + "x", strings.ToUpper(token), token[:16]} {
			b := e.browser()
			resp, body := b.post("/ui/login", url.Values{"token": {tok}})
			if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
				t.Errorf("token %q: status %d, cookies %v; want 401 and none", tok, resp.StatusCode, resp.Cookies())
			}
			if !strings.Contains(body, `id="login-error"`) {
				t.Errorf("token %q: the login page does not say it was wrong", tok)
			}
		}
	})

	t.Run("PagesSendStrangersToTheLoginForm", func(t *testing.T) {
		b := e.browser()
		for _, path := range []string{"/ui/", "/ui/notices/x", "/ui/feed", "/ui/partners", "/ui/nothing"} {
			resp, _ := b.get(path)
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login" {
				t.Errorf("GET %s: %d to %q, want 303 to /ui/login", path, resp.StatusCode, resp.Header.Get("Location"))
			}
		}
		if resp, _ := b.get("/ui/feed/events"); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET /ui/feed/events: %d, want 401", resp.StatusCode)
		}
		if resp, _ := b.post("/ui/partners/shop/pause", url.Values{"csrf": {"x"}}); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("POST pause: %d, want 401", resp.StatusCode)
		}
	})

	t.Run("ForgedAndExpiredCookiesAreRefused", func(t *testing.T) {
		b := e.login(token)
		u, _ := url.Parse(e.url + "/ui/")
		good := b.c.Jar.Cookies(u)[0]
		parts := strings.Split(good.Value, ".")
		if len(parts) != 3 {
			t.Fatalf("cookie %q: want expiry.nonce.mac", good.Value)
		}
		exp, nonce, mac := parts[0], parts[1], parts[2]
		for _, v := range []string{"", good.Value + "x", "99999999999." + nonce + "." + mac, exp + ".other." + mac,
			exp + "." + nonce + "." + strings.Repeat("A", len(mac)), token} {
			f := e.browser()
			f.c.Jar.SetCookies(u, []*http.Cookie{{Name: good.Name, Value: v}})
			if resp, _ := f.get("/ui/"); resp.StatusCode != http.StatusSeeOther {
				t.Errorf("cookie %q: status %d, want 303 to the login form", v, resp.StatusCode)
			}
		}
		e.later.Store(int64(console.SessionTTL + time.Minute))
		defer e.later.Store(0)
		if resp, _ := b.get("/ui/"); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("after SessionTTL: status %d, want 303 to the login form", resp.StatusCode)
		}
	})

	t.Run("LogoutEndsTheSession", func(t *testing.T) {
		b := e.login(token)
		resp, _ := b.post("/ui/logout", url.Values{"csrf": {b.csrf()}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("logout: %d, want 303", resp.StatusCode)
		}
		if resp, _ := b.get("/ui/"); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("after logout: %d, want 303 to the login form", resp.StatusCode)
		}
	})

	t.Run("PagesForbidFramingAndInlineScript", func(t *testing.T) {
		resp, _ := e.browser().get("/ui/login")
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("Content-Security-Policy %q", csp)
		}
	})
}

func TestCookieIsSecureOverTLS(t *testing.T) {
	e := newEnv(t, true)
	resp, _ := e.browser().post("/ui/login", url.Values{"token": {token}})
	if c := resp.Cookies(); len(c) != 1 || !c[0].Secure {
		t.Errorf("cookies %v over TLS, want one Secure cookie", c)
	}
}

func TestReadOnlyToken(t *testing.T) {
	e := newEnv(t, false)
	e.ended("gone-1", "shop", notifier.GaveUp, "nope")
	e.enqueue("wait-1", "", "1h")
	full, read := e.login(token), e.login(readToken)

	t.Run("FullTokenSeesTheButtons", func(t *testing.T) {
		if body := full.page("/ui/notices/gone-1"); !strings.Contains(body, `id="retry"`) {
			t.Error("no retry button on a given-up notice")
		}
		if body := full.page("/ui/notices/wait-1"); !strings.Contains(body, `id="cancel"`) {
			t.Error("no cancel button on a pending notice")
		}
		if body := full.page("/ui/partners"); !strings.Contains(body, `name="pause"`) {
			t.Error("no pause button on the partners page")
		}
	})

	t.Run("ReadTokenSeesNoButtons", func(t *testing.T) {
		for _, path := range []string{"/ui/notices/gone-1", "/ui/notices/wait-1", "/ui/partners"} {
			body := read.page(path)
			if !strings.Contains(body, `data-access="read"`) {
				t.Errorf("%s does not say read-only", path)
			}
			for _, button := range []string{`id="retry"`, `id="cancel"`, `name="pause"`, `name="resume"`, "/retry", "/cancel", "/pause"} {
				if strings.Contains(body, button) {
					t.Errorf("%s shows %s to a read-only session", path, button)
				}
			}
		}
	})

	t.Run("ReadTokenCannotPost", func(t *testing.T) {
		csrf := read.csrf() // its own, valid token: access alone refuses it
		for _, path := range []string{"/ui/notices/gone-1/retry", "/ui/notices/wait-1/cancel", "/ui/partners/shop/pause"} {
			if resp, _ := read.post(path, url.Values{"csrf": {csrf}}); resp.StatusCode != http.StatusForbidden {
				t.Errorf("POST %s: %d, want 403", path, resp.StatusCode)
			}
		}
		if st := state(t, e.q, "gone-1"); st == notifier.StatePending {
			t.Error("a read-only POST sent gone-1 again")
		}
		if st := state(t, e.q, "wait-1"); st != notifier.StatePending {
			t.Errorf("wait-1 is %s after a read-only cancel, want pending", st)
		}
		if ps, _ := e.q.PartnerStates(context.Background(), []string{"shop"}); ps["shop"].Paused {
			t.Error("a read-only POST paused shop")
		}
	})
}

func TestCSRF(t *testing.T) {
	e := newEnv(t, false)
	e.enqueue("wait-1", "", "1h")
	full, other := e.login(token), e.login(token)
	read := e.login(readToken)

	for _, tc := range []struct {
		name string
		form url.Values
	}{
		{"Missing", url.Values{}},
		{"Wrong", url.Values{"csrf": {"not-the-token"}}},
		{"OfAnotherSession", url.Values{"csrf": {other.csrf()}}},
		{"OfAReadOnlySession", url.Values{"csrf": {read.csrf()}}},
	} {
		t.Run(tc.name+"IsRefused", func(t *testing.T) {
			if resp, _ := full.post("/ui/notices/wait-1/cancel", tc.form); resp.StatusCode != http.StatusForbidden {
				t.Errorf("status %d, want 403", resp.StatusCode)
			}
			if st := state(t, e.q, "wait-1"); st != notifier.StatePending {
				t.Errorf("wait-1 is %s, want still pending", st)
			}
		})
	}

	t.Run("TheSessionsOwnIsAccepted", func(t *testing.T) {
		resp, _ := full.post("/ui/notices/wait-1/cancel", url.Values{"csrf": {full.csrf()}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("status %d, want 303", resp.StatusCode)
		}
		if st := state(t, e.q, "wait-1"); st != notifier.StateCancelled {
			t.Errorf("wait-1 is %s, want cancelled", st)
		}
		if body := full.page(resp.Header.Get("Location")); !strings.Contains(body, `data-state="cancelled"`) || !strings.Contains(body, `id="flash"`) {
			t.Error("the notice page after cancel does not say cancelled")
		}
	})
}

var reCount = regexp.MustCompile(`data-state="([a-z-]+)" data-count="(\d+)"`)

func counts(body string) map[string]string {
	got := map[string]string{}
	for _, m := range reCount.FindAllStringSubmatch(body, -1) {
		got[m[1]] = m[2]
	}
	return got
}

func TestNoticesList(t *testing.T) {
	e := newEnv(t, false)
	e.enqueue("wait-1", "", "1h")
	e.enqueue("wait-2", "shop", "2h")
	e.park("parked-1", "shop")
	e.ended("done-1", "shop", notifier.Delivered, "ok")
	e.ended("done-2", "", notifier.Delivered, "ok")
	e.ended("gone-1", "shop", notifier.GaveUp, "nope")
	b := e.login(token)

	t.Run("CountsPerState", func(t *testing.T) {
		body := b.page("/ui/")
		want := map[string]string{"pending": "2", "parked": "1", "delivered": "2", "gave-up": "1"}
		if got := counts(body); len(got) != 4 || got["pending"] != "2" || got["parked"] != "1" || got["delivered"] != "2" || got["gave-up"] != "1" {
			t.Errorf("counts %v, want %v", got, want)
		}
		for _, id := range []string{"wait-1", "wait-2", "parked-1", "done-1", "done-2", "gone-1"} {
			if !strings.Contains(body, `data-id="`+id+`"`) {
				t.Errorf("%s is not listed", id)
			}
		}
		if strings.Index(body, `data-id="wait-1"`) > strings.Index(body, `data-id="wait-2"`) {
			t.Error("waiting notices are not soonest due first")
		}
	})

	t.Run("FiltersByState", func(t *testing.T) {
		body := b.page("/ui/?state=parked")
		if !strings.Contains(body, `data-id="parked-1" data-state="parked"`) || strings.Contains(body, `data-id="wait-1"`) || strings.Contains(body, `data-id="done-1"`) {
			t.Error("state=parked lists more or less than parked-1")
		}
		body = b.page("/ui/?state=gave-up")
		if !strings.Contains(body, `data-id="gone-1"`) || strings.Contains(body, `data-id="done-1"`) || strings.Contains(body, `data-id="wait-1"`) {
			t.Error("state=gave-up lists more or less than gone-1")
		}
	})

	t.Run("FiltersByPartnerWithCounts", func(t *testing.T) {
		body := b.page("/ui/?partner=shop")
		if got := counts(body); got["pending"] != "1" || got["parked"] != "1" || got["delivered"] != "1" || got["gave-up"] != "1" {
			t.Errorf("counts for shop %v, want 1 of each", got)
		}
		if strings.Contains(body, `data-id="wait-1"`) || strings.Contains(body, `data-id="done-2"`) {
			t.Error("partner=shop lists notices of no partner")
		}
	})

	t.Run("FiltersByTime", func(t *testing.T) {
		body := b.page("/ui/?since=30s")
		if got := counts(body); got["pending"] != "2" || got["delivered"] != "0" {
			t.Errorf("counts since 30s ago %v: want the 2 pending enqueued now and none of the ended a minute ago", got)
		}
		if resp, _ := b.get("/ui/?since=yesterday"); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("since=yesterday: %d, want 400", resp.StatusCode)
		}
	})
}

var (
	reSlot    = regexp.MustCompile(`<g class="slot" data-slot="(\d+)" data-offset-ms="(\d+)"`)
	reAttempt = regexp.MustCompile(`<g class="attempt outcome-([a-z-]+)" data-slot="(\d+)" data-outcome="[a-z-]+" data-status="(\d+)" data-late-ms="([\d.]+)"`)
	reNext    = regexp.MustCompile(`<g class="next" data-slot="(\d+)"`)
)

func TestNoticePage(t *testing.T) {
	e := newEnv(t, false)
	b := e.login(token)

	t.Run("DrawsTheSlotsAttemptsAndNextDue", func(t *testing.T) {
		n := e.enqueue("order-7", "", "0,1h,2h")
		// Attempt 1 was made 12 ms after its slot; attempt 2 is now armed
		// for stamp+1h (a pending notice's attempts are those of its stamp).
		e.record(notifier.Attempt{NoticeID: "order-7", Stamp: n.Stamp, N: 1, Due: n.Stamp, Start: n.Stamp.Add(12 * time.Millisecond),
			Duration: 30 * time.Millisecond, URL: "http://127.0.0.1:9/hook?redacted", Status: 503, Outcome: notifier.Retry,
			Response: "busy", Next: n.Stamp.Add(time.Hour)})
		ctx := context.Background()
		_, jobs, err := e.q.Claim(ctx, []notifier.Trigger{{ID: "order-7", Stamp: n.Stamp, N: 1}}, time.Minute)
		if err != nil || len(jobs) != 1 {
			t.Fatalf("claim: %v", err)
		}
		if ok, err := e.q.Reschedule(ctx, jobs[0], 2, n.Stamp.Add(time.Hour)); !ok || err != nil {
			t.Fatalf("reschedule: %v %v", ok, err)
		}
		body := b.page("/ui/notices/order-7")
		slots := reSlot.FindAllStringSubmatch(body, -1)
		if len(slots) != 3 {
			t.Fatalf("%d slots, want 3", len(slots))
		}
		for i, want := range []string{"0", "3600000", "7200000"} {
			if slots[i][1] != string(rune('1'+i)) || slots[i][2] != want {
				t.Errorf("slot %d = #%s at +%sms, want #%d at +%sms", i, slots[i][1], slots[i][2], i+1, want)
			}
		}
		attempts := reAttempt.FindAllStringSubmatch(body, -1)
		if len(attempts) != 1 || attempts[0][1] != "retry" || attempts[0][2] != "1" || attempts[0][3] != "503" || attempts[0][4] != "12.000" {
			t.Errorf("attempts %v, want #1 retry 503 12ms late", attempts)
		}
		if next := reNext.FindStringSubmatch(body); next == nil || next[1] != "2" {
			t.Errorf("next %v, want slot 2", next)
		}
		if !strings.Contains(body, `data-state="pending"`) || !strings.Contains(body, "busy") {
			t.Error("the page does not show the state pending and the reply")
		}
	})

	t.Run("UnknownIs404", func(t *testing.T) {
		if resp, _ := b.get("/ui/notices/nobody"); resp.StatusCode != http.StatusNotFound {
			t.Errorf("status %d, want 404", resp.StatusCode)
		}
	})

	t.Run("RetrySendsAnEndedNoticeAgain", func(t *testing.T) {
		old := e.ended("gone-1", "", notifier.GaveUp, "nope")
		resp, _ := b.post("/ui/notices/gone-1/retry", url.Values{"csrf": {b.csrf()}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("status %d, want 303", resp.StatusCode)
		}
		p, err := e.q.Pending(context.Background(), "gone-1")
		if err != nil || !p.Notice.Stamp.After(old.Stamp) {
			t.Fatalf("pending %+v (%v), want a fresh stamp after %s", p, err, old.Stamp)
		}
		body := b.page("/ui/notices/gone-1")
		if !strings.Contains(body, `data-state="pending"`) || !strings.Contains(body, "and 1 of earlier sends") {
			t.Error("after retry the page does not show the new send, pending, apart from the old attempt")
		}
		if resp, _ := b.post("/ui/notices/gone-1/retry", url.Values{"csrf": {b.csrf()}}); resp.StatusCode != http.StatusConflict {
			t.Errorf("retry of a pending notice: %d, want 409", resp.StatusCode)
		}
	})
}

// TestEscaping: what partners and enqueuers control is shown as text, and
// what is secret is never shown.
func TestEscaping(t *testing.T) {
	e := newEnv(t, false)
	const id = `<script>alert(1)</script>`
	const reply = `<script>alert("x")</script><img src=x onerror=alert(2)>`
	e.ended(id, "shop", notifier.GaveUp, reply)
	e.enqueue(`"><svg/onload=alert(3)>`, "shop", "1h")
	b := e.login(token)
	for _, path := range []string{"/ui/", "/ui/notices/" + url.PathEscape(id), "/ui/feed", "/ui/notices/" + url.PathEscape(`"><svg/onload=alert(3)>`)} {
		body := b.page(path)
		for _, bad := range []string{"<script>alert", "<img src=x", "<svg/onload", `"><svg`, "s3cret", "MfKQ9r8", "4111"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s contains %q", path, bad)
			}
		}
		if path != "/ui/notices/"+url.PathEscape(`"><svg/onload=alert(3)>`) && !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("%s does not show the id as text", path)
		}
	}
	if body := b.page("/ui/notices/" + url.PathEscape(id)); !strings.Contains(body, "&lt;img src=x onerror=alert(2)&gt;") {
		t.Error("the reply is not shown as escaped text")
	}
}

func TestLiveFeedStreamsNewAttempts(t *testing.T) {
	e := newEnv(t, false)
	old := e.ended("before-1", "", notifier.Delivered, "ok")
	b := e.login(token)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/ui/feed/events", nil)
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("status %d, Content-Type %q; want 200 text/event-stream", resp.StatusCode, ct)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
		close(lines)
	}()
	next := func(d time.Duration) (string, bool) {
		select {
		case l, ok := <-lines:
			return l, ok
		case <-time.After(d):
			return "", false
		}
	}
	if l, _ := next(5 * time.Second); l != "retry: 1000" {
		t.Fatalf("first line %q, want the retry hint", l)
	}
	next(time.Second) // the blank line after it

	recorded := time.Now()
	e.record(notifier.Attempt{NoticeID: "new-1", Stamp: old.Stamp, N: 2, Due: old.Stamp, Start: time.Now(), URL: "http://127.0.0.1:9/x?redacted",
		Status: 502, Outcome: notifier.Retry, Response: "<b>bad gateway</b>"})
	var event []string
	for len(event) < 3 {
		l, ok := next(time.Second)
		if !ok {
			t.Fatalf("no event within a second of the attempt being logged; got %q", event)
		}
		event = append(event, l)
	}
	t.Logf("event %s after the attempt was recorded", time.Since(recorded))
	if event[0] != "event: attempt" || event[1] != "id: 2" || !strings.HasPrefix(event[2], "data: ") {
		t.Fatalf("event %q, want the attempt with id 2 (the one before the stream began is not sent)", event)
	}
	var got struct {
		ID, Outcome, Response, Href string
		N, Status                   int
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(event[2], "data: ")), &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != "new-1" || got.N != 2 || got.Status != 502 || got.Outcome != "retry" || got.Response != "<b>bad gateway</b>" || got.Href != "/ui/notices/new-1" {
		t.Errorf("event data %+v", got)
	}
	if strings.Contains(event[2], "<b>") {
		t.Error("the event's JSON holds a raw <: want it escaped as \\u003c")
	}
}

func TestPartnerPauseAndResume(t *testing.T) {
	e := newEnv(t, false)
	b := e.login(token)
	paused := func() bool {
		ps, err := e.q.PartnerStates(context.Background(), []string{"shop"})
		if err != nil {
			t.Fatal(err)
		}
		return ps["shop"].Paused
	}
	if resp, _ := b.post("/ui/partners/shop/pause", url.Values{"csrf": {b.csrf()}}); resp.StatusCode != http.StatusSeeOther || !paused() {
		t.Fatalf("pause: %d, paused %v; want 303 and paused", resp.StatusCode, paused())
	}
	if body := b.page("/ui/partners"); !strings.Contains(body, `data-partner="shop" data-paused="true"`) || !strings.Contains(body, `name="resume"`) {
		t.Error("the partners page does not show shop paused with a resume button")
	}
	if resp, _ := b.post("/ui/partners/shop/resume", url.Values{"csrf": {b.csrf()}}); resp.StatusCode != http.StatusSeeOther || paused() {
		t.Fatalf("resume: %d, paused %v; want 303 and active", resp.StatusCode, paused())
	}
	if resp, _ := b.post("/ui/partners/nobody/pause", url.Values{"csrf": {b.csrf()}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("pause of an unknown partner: %d, want 404", resp.StatusCode)
	}
}

func TestNewRefusesAWeakConfig(t *testing.T) {
	e := newEnv(t, false)
	for _, o := range []console.Options{
		{Queue: e.q, Log: e.log},
		{Queue: e.q, Log: e.log, Token: "short"},
		{Queue: e.q, Log: e.log, Token: token, ReadToken: "short"},
		{Queue: e.q, Log: e.log, Token: token, ReadToken: token},
		{Log: e.log, Token: token},
		{Queue: e.q, Token: token},
	} {
		if _, err := console.New(o); err == nil {
			t.Errorf("New(token %q, read token %q, queue %v, log %v): nil error", o.Token, o.ReadToken, o.Queue != nil, o.Log != nil)
		}
	}
}

// TestNoticesListsTakeTurns: lists are read one at a time; a list that
// waits longer than ListWait for its turn is answered 503 with Retry-After,
// and the next one, once the first is done, is served.
func TestNoticesListsTakeTurns(t *testing.T) {
	e := newEnv(t, false, func(o *console.Options) { o.ListWait = 200 * time.Millisecond })
	b := e.login(token)
	ctx := context.Background()
	// Redis answers nobody for a second: the first list holds its slot
	// meanwhile.
	if err := e.rdb.Do(ctx, "CLIENT", "PAUSE", "1000", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	first := make(chan int, 1)
	go func() {
		resp, err := b.c.Get(e.url + "/ui/")
		if err != nil {
			first <- 0
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	time.Sleep(100 * time.Millisecond) // the first list is waiting on Redis by now
	resp, body := b.get("/ui/")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "Busy") {
		t.Errorf("second list while the first reads: %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if code := <-first; code != http.StatusOK {
		t.Errorf("first list: %d, want 200", code)
	}
	b.page("/ui/")
}
