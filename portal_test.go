package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/store/redistest"
)

const (
	shopPortalToken    = "shop-portal-token-0123456789"
	billingPortalToken = "billing-portal-token-9876543210"
)

// portalConfig writes a config with two partners of p, each with a portal
// token: shop's in the config, billing's in a file next to it.
func portalConfig(t *testing.T, p *consolePartner) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "billing.tokens"), "# rotated 2026-12-01\n"+billingPortalToken+"\n")
	cfg := filepath.Join(dir, "notifier.toml")
	writeFile(t, cfg, fmt.Sprintf("[[partner]]\nname = \"shop\"\nurl_prefix = [\"%[1]s/shop/\"]\n"+
		"secrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]\nportal_tokens = [\"%[2]s\"]\n\n"+
		"[[partner]]\nname = \"billing\"\nurl_prefix = [\"%[1]s/billing/\"]\nportal_tokens_file = \"billing.tokens\"\n\n"+
		"[[partner]]\nname = \"legacy\"\nurl_prefix = [\"%[1]s/legacy/\"]\n", p.URL, shopPortalToken))
	return cfg
}

func portalLogIn(t *testing.T, ctx context.Context, base, token string) {
	t.Helper()
	do(t, ctx, "log in to the portal",
		chromedp.Navigate(base+"/portal/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#partner")),
	)
}

// listedIDs are the notice ids of the portal's list open in the browser.
func listedIDs(t *testing.T, ctx context.Context) string {
	t.Helper()
	return eval[string](t, ctx, `Array.from(document.querySelectorAll("#waiting tbody tr[data-id], #ended tbody tr[data-id]")).map(r => r.dataset.id).sort().join(",")`)
}

// TestPortalInTheBrowser: a partner logs in to the portal with its token
// and sees its own notices only: the list, a timeline, the live feed; it
// has a given-up notice sent again with its button; another partner's
// notice and the operator's pages stay shut.
func TestPortalInTheBrowser(t *testing.T) {
	ctx := newBrowser(t)
	p := newConsolePartner(t)
	s := startConsoleServe(t, p, "--config", portalConfig(t, p))
	s.enqueue(t, "order-1", "/shop/notify?sign=s3cret", "0,300ms,600ms")
	s.enqueue(t, "doomed-1", "/shop/notify", "0,200ms")
	s.enqueue(t, "invoice-1", "/billing/hooks", "0,10s")
	waitRows(t, s.db, 6) // order-1: 503, 503, 200; doomed-1: 503, 503; invoice-1: 200

	t.Run("LogsInAndSeesOnlyItsNotices", func(t *testing.T) {
		screenshotOnFailure(t, ctx)
		portalLogIn(t, ctx, s.base, shopPortalToken)
		if got := eval[string](t, ctx, `document.getElementById("partner").dataset.partner`); got != "shop" {
			t.Errorf("logged in as %q, want shop", got)
		}
		if got := listedIDs(t, ctx); got != "doomed-1,order-1" {
			t.Errorf("the list shows %q, want doomed-1,order-1 (shop's only)", got)
		}
		html := eval[string](t, ctx, `document.documentElement.outerHTML`)
		if strings.Contains(html, "invoice-1") || strings.Contains(html, "/billing/") {
			t.Error("shop's portal shows something of billing's")
		}
	})

	t.Run("TimelineOfItsNotice", func(t *testing.T) {
		screenshotOnFailure(t, ctx)
		do(t, ctx, "open order-1", chromedp.Navigate(s.base+"/portal/notices/order-1"), chromedp.WaitVisible(chromedp.CSS("#timeline")))
		if st := pageState(t, ctx); st != "delivered" {
			t.Errorf("state %q, want delivered", st)
		}
		statuses := eval[string](t, ctx, `Array.from(document.querySelectorAll("#timeline .attempt")).map(g => g.dataset.status).join(",")`)
		if statuses != "503,503,200" {
			t.Errorf("timeline attempts %q, want 503,503,200", statuses)
		}
		replies := eval[string](t, ctx, `document.getElementById("attempts").textContent`)
		if !strings.Contains(replies, "try later") {
			t.Errorf("the attempts table lacks the partner's reply: %q", replies)
		}
		html := eval[string](t, ctx, `document.documentElement.outerHTML`)
		if strings.Contains(html, "s3cret") || strings.Contains(html, "MfKQ9r8") || strings.Contains(html, `{"order":42}`) {
			t.Error("the page shows the URL's query, the secret or the body")
		}
	})

	t.Run("OtherPartnersNoticeAndOperatorPagesAreShut", func(t *testing.T) {
		screenshotOnFailure(t, ctx)
		do(t, ctx, "open invoice-1", chromedp.Navigate(s.base+"/portal/notices/invoice-1"), chromedp.WaitVisible(chromedp.CSS("#message")))
		if msg := eval[string](t, ctx, `document.getElementById("message").textContent`); msg != "No such notice." {
			t.Errorf("billing's notice: %q, want No such notice.", msg)
		}
		for _, path := range []string{"/ui/", "/ui/partners", "/ui/notices/invoice-1", "/ui/feed"} {
			do(t, ctx, "open "+path, chromedp.Navigate(s.base+path), chromedp.WaitVisible(chromedp.CSS("body")))
			if got := eval[string](t, ctx, `location.pathname`); got != "/ui/login" {
				t.Errorf("%s with a partner session landed on %s, want the operator login /ui/login", path, got)
			}
		}
	})

	t.Run("LiveFeedShowsOnlyItsAttempts", func(t *testing.T) {
		screenshotOnFailure(t, ctx)
		do(t, ctx, "open the feed", chromedp.Navigate(s.base+"/portal/feed"),
			chromedp.Poll[chromedp.Void](`document.getElementById("feed-state").dataset.state === "live"`,
				chromedp.WithPollingTimeout(10*time.Second)))
		s.enqueue(t, "invoice-2", "/billing/hooks", "0,1h")
		s.enqueue(t, "live-1", "/shop/notify", "0,1h")
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := chromedp.Run(c, chromedp.Poll[bool](`!!document.querySelector('#feed tbody tr[data-id="live-1"]')`)); err != nil {
			t.Fatalf("live-1 never reached the feed: %v", err)
		}
		waitRows(t, s.db, 8)
		ids := eval[string](t, ctx, `Array.from(document.querySelectorAll("#feed tbody tr")).map(r => r.dataset.id).join(",")`)
		if strings.Contains(ids, "invoice") {
			t.Errorf("shop's feed shows %s, with billing's attempts", ids)
		}
	})

	t.Run("SendsAGivenUpNoticeAgain", func(t *testing.T) {
		screenshotOnFailure(t, ctx)
		do(t, ctx, "open doomed-1", chromedp.Navigate(s.base+"/portal/notices/doomed-1"), chromedp.WaitVisible(chromedp.CSS("#state")))
		if st := pageState(t, ctx); st != "gave-up" {
			t.Fatalf("state %q, want gave-up", st)
		}
		do(t, ctx, "click send again", chromedp.Click(chromedp.CSS("#retry")), chromedp.WaitVisible(chromedp.CSS("#flash")))
		deadline := time.Now().Add(10 * time.Second)
		for pageState(t, ctx) != "delivered" {
			if time.Now().After(deadline) {
				t.Fatalf("doomed-1 still %s 10s after it was sent again", pageState(t, ctx))
			}
			time.Sleep(100 * time.Millisecond) // server-rendered: reload
			do(t, ctx, "reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#state")))
		}
		if n := len(p.arrivals("doomed-1")); n != 3 {
			t.Errorf("partner saw %d attempts of doomed-1, want 2 and the re-send", n)
		}
		logs := s.logs.String()
		if !regexp.MustCompile(`portal: notice re-sent.*partner=shop token=` + notifier.TokenFingerprint(shopPortalToken) + ` id=doomed-1`).MatchString(logs) {
			t.Errorf("serve's log does not say which token asked for the re-send")
		}
		if strings.Contains(logs, shopPortalToken) {
			t.Error("serve's log holds the portal token")
		}
	})

	if *screenshots {
		// The README's portal screenshots, from this run.
		do(t, ctx, "list", chromedp.EmulateViewport(1100, 560), chromedp.Navigate(s.base+"/portal/"), chromedp.WaitVisible(chromedp.CSS("#ended")))
		shoot(t, ctx, "portal-notices.png")
		do(t, ctx, "order-1", chromedp.EmulateViewport(1100, 700), chromedp.Navigate(s.base+"/portal/notices/order-1"),
			chromedp.WaitVisible(chromedp.CSS("#timeline")))
		shoot(t, ctx, "portal-notice.png")
	}
}

// pull GETs one page of partner notices with tok.
func pull(t *testing.T, base, tok, query string) notifier.PullPage {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/v1/partner/notices?"+query, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("pull ?%s: %d %s", query, resp.StatusCode, b)
	}
	var page notifier.PullPage
	if err := json.Unmarshal(b, &page); err != nil {
		t.Fatal(err)
	}
	return page
}

// TestPartnerPullCursorSurvivesRestart: a receiver pulls what ended, serve
// restarts, more notices end, and the cursor it kept returns exactly
// those.
func TestPartnerPullCursorSurvivesRestart(t *testing.T) {
	p := newConsolePartner(t)
	cfg := portalConfig(t, p)
	srv := redistest.Start(t)
	db := filepath.Join(t.TempDir(), "attempts.db")
	args := []string{"--redis", srv.URL(), "--db", db, "--allow-private", "--listen", "127.0.0.1:0", "--api-token", consoleToken, "--config", cfg}
	start := func() (*serveProc, string) {
		sp := spawnServe(t, args...)
		t.Cleanup(sp.stop)
		sp.waitSubscribed(srv.Client(), 1)
		return sp, "http://" + waitLog(t, sp.logs, regexp.MustCompile(`msg="api listening" addr=(\S+)`))
	}
	s := &consoleServe{redis: srv.URL(), db: db, partner: p}
	first, base := start()
	s.enqueue(t, "a-1", "/shop/x", "0")
	s.enqueue(t, "a-2", "/billing/x", "0")
	s.enqueue(t, "a-3", "/legacy/x", "0") // 410: gave up
	waitRows(t, db, 3)
	page := pull(t, base, shopPortalToken, "")
	if len(page.Notices) != 1 || page.Notices[0].ID != "a-1" || page.More {
		t.Fatalf("first pull %+v, want a-1 only", page)
	}
	cursor := page.Next

	first.stop()
	_, base = start()
	s.enqueue(t, "b-1", "/shop/y", "0")
	s.enqueue(t, "b-2", "/billing/y", "0")
	s.enqueue(t, "b-3", "/shop/z", "0")
	waitRows(t, db, 6)
	page = pull(t, base, shopPortalToken, "since="+url.QueryEscape(cursor))
	var got []string
	for _, n := range page.Notices {
		got = append(got, n.ID)
	}
	// In the order they ended: b-1 and b-3 are sent by different
	// workers, so either may end first.
	slices.Sort(got)
	if strings.Join(got, ",") != "b-1,b-3" {
		t.Errorf("pull from the cursor kept across the restart: %v, want b-1,b-3", got)
	}
	if billing := pull(t, base, billingPortalToken, ""); len(billing.Notices) != 2 {
		t.Errorf("billing pulls %+v, want a-2 and b-2", billing.Notices)
	}
}
