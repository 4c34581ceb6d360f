package console_test

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/notifier/console"
	"github.com/notifier/notifier/store"
	"github.com/notifier/notifier/store/redistest"
	"github.com/notifier/notifier/store/storetest"
)

const (
	shopToken = "shop-portal-token-0123456789"
	bankToken = "bank-portal-token-0123456789"
)

// newPortalEnv is serve's web surface: the operator console under /ui/
// and the partner portal under /portal/, over a private redis-server and
// a real attempt log, with partners shop and bank (each with a portal
// token) whose notices go to 127.0.0.1:9.
func newPortalEnv(t *testing.T) *env {
	t.Helper()
	srv := redistest.Start(t)
	log, _ := storetest.StartLog(t)
	e := &env{t: t, rdb: srv.Client(), log: log}
	e.q = store.NewRedis(e.rdb, "", nil)
	partners := []*notifier.Partner{
		{Name: "shop", Prefixes: []string{"http://127.0.0.1:9/"}, PortalTokens: []string{shopToken}},
		{Name: "bank", PortalTokens: []string{bankToken}},
	}
	sums, _ := notifier.NewPartners(partners, 0).Summaries()
	if err := e.q.PublishPartners(context.Background(), sums); err != nil {
		t.Fatal(err)
	}
	portal, err := notifier.NewPortal(notifier.PortalConfig{Queue: e.q, Log: log, Partners: partners, Reserved: []string{token, readToken}})
	if err != nil {
		t.Fatal(err)
	}
	ui, err := console.New(console.Options{Queue: e.q, Log: log, Token: token, ReadToken: readToken,
		Partners: func() []string { return []string{"bank", "shop"} }})
	if err != nil {
		t.Fatal(err)
	}
	pui, err := console.NewPortal(console.PortalOptions{Portal: portal, Queue: e.q, Log: log,
		Now: func() time.Time { return time.Now().Add(time.Duration(e.later.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ui/", ui)
	mux.Handle("/portal/", pui)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	e.url, e.transport = hs.URL, hs.Client().Transport
	return e
}

// portalLogin logs a browser in to the portal with tok.
func (e *env) portalLogin(tok string) *browser {
	e.t.Helper()
	b := e.browser()
	resp, body := b.post("/portal/login", url.Values{"token": {tok}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/portal/" {
		e.t.Fatalf("portal login: %d %s, want 303 to /portal/", resp.StatusCode, body)
	}
	return b
}

func (b *browser) portalCSRF() string {
	b.e.t.Helper()
	m := reCSRF.FindStringSubmatch(b.page("/portal/"))
	if m == nil {
		b.e.t.Fatal("no CSRF token in the portal page")
	}
	return m[1]
}

var reRowID = regexp.MustCompile(`<tr data-id="([^"]+)"`)

func rowIDs(body string) string {
	var ids []string
	for _, m := range reRowID.FindAllStringSubmatch(body, -1) {
		ids = append(ids, m[1])
	}
	return strings.Join(ids, ",")
}

func TestPortalLogin(t *testing.T) {
	e := newPortalEnv(t)

	t.Run("PartnerTokenSetsAPortalOnlyCookie", func(t *testing.T) {
		b := e.browser()
		resp, _ := b.post("/portal/login", url.Values{"token": {shopToken}})
		cs := resp.Cookies()
		if resp.StatusCode != http.StatusSeeOther || len(cs) != 1 {
			t.Fatalf("status %d cookies %v, want 303 and one cookie", resp.StatusCode, cs)
		}
		c := cs[0]
		if c.Path != "/portal/" || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || strings.Contains(c.Value, shopToken[:12]) {
			t.Errorf("cookie %s: want Path=/portal/, HttpOnly, SameSite=Strict, no token", c)
		}
		if body := b.page("/portal/"); !strings.Contains(body, `data-partner="shop"`) {
			t.Error("the portal does not name the partner")
		}
	})

	t.Run("OperatorTokensAndWrongOnesAreRefused", func(t *testing.T) {
		for _, tok := range []string{token, readToken, "", shopToken + "x", shopToken[:16], strings.ToUpper(shopToken)} {
			resp, body := e.browser().post("/portal/login", url.Values{"token": {tok}})
			if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 || !strings.Contains(body, `id="login-error"`) {
				t.Errorf("token %q: %d %v, want 401, no cookie, the error", tok, resp.StatusCode, resp.Cookies())
			}
		}
		for _, tok := range []string{shopToken, bankToken} {
			if resp, _ := e.browser().post("/ui/login", url.Values{"token": {tok}}); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("operator login with a partner token: %d, want 401", resp.StatusCode)
			}
		}
	})

	t.Run("APortalSessionOpensNoOperatorPage", func(t *testing.T) {
		b := e.portalLogin(shopToken)
		u, _ := url.Parse(e.url + "/portal/")
		pc := b.c.Jar.Cookies(u)[0]
		// Even sent to /ui/ by hand, under either cookie name.
		for _, name := range []string{pc.Name, "notifier_console"} {
			f := e.browser()
			ui, _ := url.Parse(e.url + "/ui/")
			f.c.Jar.SetCookies(ui, []*http.Cookie{{Name: name, Value: pc.Value}})
			for _, path := range []string{"/ui/", "/ui/partners", "/ui/feed", "/ui/notices/x"} {
				if resp, _ := f.get(path); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login" {
					t.Errorf("%s with the portal cookie as %s: %d, want 303 to /ui/login", path, name, resp.StatusCode)
				}
			}
			if resp, _ := f.post("/ui/partners/shop/pause", url.Values{"csrf": {b.portalCSRF()}}); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("pause with the portal cookie: %d, want 401", resp.StatusCode)
			}
		}
		// And an operator session opens no portal page.
		op := e.login(token)
		u2, _ := url.Parse(e.url + "/ui/")
		oc := op.c.Jar.Cookies(u2)[0]
		f := e.browser()
		f.c.Jar.SetCookies(u, []*http.Cookie{{Name: "notifier_portal", Value: oc.Value}})
		if resp, _ := f.get("/portal/"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/portal/login" {
			t.Errorf("/portal/ with an operator cookie: %d, want 303 to /portal/login", resp.StatusCode)
		}
	})

	t.Run("ForgedAndExpiredCookiesAreRefused", func(t *testing.T) {
		b := e.portalLogin(shopToken)
		u, _ := url.Parse(e.url + "/portal/")
		good := b.c.Jar.Cookies(u)[0]
		parts := strings.Split(good.Value, ".")
		if len(parts) != 4 {
			t.Fatalf("cookie %q: want expiry.nonce.fingerprint.mac", good.Value)
		}
		bankFP := notifier.TokenFingerprint(bankToken)
		for _, v := range []string{"", good.Value + "x", "99999999999." + parts[1] + "." + parts[2] + "." + parts[3],
			parts[0] + "." + parts[1] + "." + bankFP + "." + parts[3], shopToken} {
			f := e.browser()
			f.c.Jar.SetCookies(u, []*http.Cookie{{Name: good.Name, Value: v}})
			if resp, _ := f.get("/portal/"); resp.StatusCode != http.StatusSeeOther {
				t.Errorf("cookie %q: %d, want 303 to the login form", v, resp.StatusCode)
			}
		}
		e.later.Store(int64(console.SessionTTL + time.Minute))
		defer e.later.Store(0)
		if resp, _ := b.get("/portal/"); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("after SessionTTL: %d, want 303", resp.StatusCode)
		}
	})

	t.Run("PagesHaveTheConsolesCSP", func(t *testing.T) {
		resp, _ := e.browser().get("/portal/login")
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") ||
			resp.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("Content-Security-Policy %q, X-Frame-Options %q", csp, resp.Header.Get("X-Frame-Options"))
		}
	})
}

// TestPortalPagesAreScoped: every page and button of the portal reaches
// only the session's partner's notices.
func TestPortalPagesAreScoped(t *testing.T) {
	e := newPortalEnv(t)
	e.enqueue("shop-wait", "shop", "1h")
	e.enqueue("bank-wait", "bank", "1h")
	e.ended("shop-done", "shop", notifier.GaveUp, "shop's reply")
	e.ended("bank-done", "bank", notifier.GaveUp, "bank's reply")
	shop, bank := e.portalLogin(shopToken), e.portalLogin(bankToken)

	t.Run("ListHoldsOnlyItsNotices", func(t *testing.T) {
		if got := rowIDs(shop.page("/portal/")); got != "shop-wait,shop-done" {
			t.Errorf("shop's list: %s, want shop-wait,shop-done", got)
		}
		if got := rowIDs(bank.page("/portal/?state=gave-up")); got != "bank-done" {
			t.Errorf("bank's gave-up list: %s, want bank-done", got)
		}
	})

	t.Run("OtherPartnersNoticesAreNoSuchNotice", func(t *testing.T) {
		for _, id := range []string{"bank-wait", "bank-done", "nosuch"} {
			resp, body := shop.get("/portal/notices/" + id)
			if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "No such notice.") || strings.Contains(body, "bank's reply") {
				t.Errorf("shop opens %s: %d, want 404 No such notice.", id, resp.StatusCode)
			}
		}
		body := shop.page("/portal/notices/shop-done")
		if !strings.Contains(body, "shop&#39;s reply") || !strings.Contains(body, `id="retry"`) || strings.Contains(body, "4111") {
			t.Error("shop's own notice lacks its reply or its Send again button, or shows the body")
		}
	})

	t.Run("AParkedNoticeIsItsPartnersOnly", func(t *testing.T) {
		// Parked before its first attempt: no attempt names its partner.
		e.park("shop-parked", "shop")
		if body := shop.page("/portal/notices/shop-parked"); !strings.Contains(body, `data-state="parked"`) {
			t.Error("shop's parked notice does not show as parked")
		}
		if resp, _ := bank.get("/portal/notices/shop-parked"); resp.StatusCode != http.StatusNotFound {
			t.Errorf("bank opens shop's parked notice: %d, want 404", resp.StatusCode)
		}
	})

	t.Run("ButtonsNeedTheSessionsCSRFAndReachOnlyItsNotices", func(t *testing.T) {
		for _, form := range []url.Values{{}, {"csrf": {"x"}}, {"csrf": {bank.portalCSRF()}}} {
			if resp, _ := shop.post("/portal/notices/shop-done/retry", form); resp.StatusCode != http.StatusForbidden {
				t.Errorf("retry with csrf %v: %d, want 403", form, resp.StatusCode)
			}
		}
		if resp, _ := shop.post("/portal/notices/bank-done/retry", url.Values{"csrf": {shop.portalCSRF()}}); resp.StatusCode != http.StatusNotFound {
			t.Errorf("shop retries bank-done: %d, want 404", resp.StatusCode)
		}
		if st := state(t, e.q, "bank-done"); st == notifier.StatePending {
			t.Error("bank-done was sent again at shop's request")
		}
		resp, _ := shop.post("/portal/notices/shop-done/retry", url.Values{"csrf": {shop.portalCSRF()}})
		if resp.StatusCode != http.StatusSeeOther || state(t, e.q, "shop-done") != notifier.StatePending {
			t.Errorf("shop retries shop-done: %d, state %s; want 303 and pending", resp.StatusCode, state(t, e.q, "shop-done"))
		}
		if resp, body := bank.post("/portal/test", url.Values{"csrf": {bank.portalCSRF()}}); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("bank (no url_prefix) sends a test notice: %d %s, want 400", resp.StatusCode, body)
		}
		resp, _ = shop.post("/portal/test", url.Values{"csrf": {shop.portalCSRF()}, "url": {"http://127.0.0.1:9/t"}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Errorf("shop sends a test notice: %d, want 303", resp.StatusCode)
		}
	})

	t.Run("FeedStreamsOnlyItsAttempts", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/portal/feed/events", nil)
		resp, err := bank.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("events: %d", resp.StatusCode)
		}
		lines := make(chan string, 100)
		go func() {
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		for l := range lines { // up to the blank line after the retry hint
			if l == "" {
				break
			}
		}
		now := time.Now()
		e.record(notifier.Attempt{NoticeID: "shop-live", Stamp: now, N: 1, Due: now, Start: now, URL: "http://127.0.0.1:9/x",
			Status: 500, Outcome: notifier.Retry, Partner: "shop"})
		e.record(notifier.Attempt{NoticeID: "bank-live", Stamp: now, N: 1, Due: now, Start: now, URL: "http://127.0.0.1:9/x",
			Status: 500, Outcome: notifier.Retry, Partner: "bank"})
		for l := range lines {
			if strings.Contains(l, "shop-live") {
				t.Fatalf("bank's feed streamed shop's attempt: %s", l)
			}
			if strings.Contains(l, "bank-live") {
				if !strings.Contains(l, `"href":"/portal/notices/bank-live"`) {
					t.Errorf("event %s links outside the portal", l)
				}
				return
			}
		}
		t.Error("bank's attempt never came")
	})
}
