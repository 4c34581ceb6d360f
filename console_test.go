package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/notifier/notifier/store/redistest"
)

var screenshots = flag.Bool("screenshots", false, "TestConsoleScreenshots: rewrite the README's screenshots in testdata/screenshots/")

const consoleToken = "console-token-0123456789"

// consolePartner is a partner for the console tests: by path, it fails the
// first two attempts of each notice with 503 (/shop/), answers 200 at once
// (/billing/) or 410 Gone (/legacy/). It records when each attempt came.
type consolePartner struct {
	*httptest.Server
	mu   sync.Mutex
	seen map[string][]time.Time // notice id -> arrivals
}

func newConsolePartner(t *testing.T) *consolePartner {
	t.Helper()
	p := &consolePartner{seen: map[string][]time.Time{}}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		io.Copy(io.Discard, r.Body)
		id := r.Header.Get("Webhook-Id")
		p.mu.Lock()
		p.seen[id] = append(p.seen[id], at)
		n := len(p.seen[id])
		p.mu.Unlock()
		switch {
		case strings.HasPrefix(r.URL.Path, "/legacy/"):
			w.WriteHeader(http.StatusGone)
			io.WriteString(w, `{"error":"endpoint retired"}`)
		case strings.HasPrefix(r.URL.Path, "/shop/") && n <= 2:
			time.Sleep(20 * time.Millisecond)
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":"try later","retry":true}`)
		default:
			io.WriteString(w, `{"ok":true}`)
		}
	}))
	t.Cleanup(p.Close)
	return p
}

// arrivals returns when the attempts of notice id came.
func (p *consolePartner) arrivals(id string) []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.seen[id]...)
}

// consoleServe is a serve process with --listen for the console tests.
type consoleServe struct {
	base, redis, db string
	partner         *consolePartner
	logs            *syncBuffer
}

func startConsoleServe(t *testing.T, p *consolePartner, extra ...string) *consoleServe {
	t.Helper()
	srv := redistest.Start(t)
	s := &consoleServe{redis: srv.URL(), db: filepath.Join(t.TempDir(), "attempts.db"), partner: p}
	args := append([]string{"--redis", s.redis, "--db", s.db, "--allow-private", "--listen", "127.0.0.1:0",
		"--api-token", consoleToken}, extra...)
	s.logs = startServe(t, srv.Client(), args...)
	s.base = "http://" + waitLog(t, s.logs, regexp.MustCompile(`msg="api listening" addr=(\S+)`))
	return s
}

func (s *consoleServe) enqueue(t *testing.T, id, path, schedule string) {
	t.Helper()
	code, _, errOut := runCLI(t, "", "enqueue", "--redis", s.redis, "--id", id, "--url", s.partner.URL+path,
		"--data", `{"order":42}`, "--secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "--schedule", schedule)
	if code != 0 {
		t.Fatalf("enqueue %s = %d %s", id, code, errOut)
	}
}

// chromiumPath finds Debian's chromium (or another Chrome on PATH).
func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// newBrowser starts a headless Chromium for the test, closed at its end.
// Without Chromium the test fails: it is a dependency, not an option.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath()
	if path == "" {
		t.Fatal("chromium is not installed, and the web console's browser tests need it: " +
			"run `make test-deps` (or `make test`) as root (it runs apt-get install chromium), or install Debian's chromium package")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		// Without these a machine without network makes Chromium hang on
		// its own background connections.
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 860),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first run starts the browser and must have no deadline: the
	// browser lives as long as the context of that run.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium %s: %v", path, err)
	}
	return ctx
}

// screenshotOnFailure saves the page as it is when t ends, if t failed.
func screenshotOnFailure(t *testing.T, ctx context.Context) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		png, err := chromedp.Run(c, chromedp.FullScreenshot(100))
		if err != nil {
			t.Logf("no screenshot: %v", err)
			return
		}
		dir := filepath.Join("testdata", "screenshots", "failures")
		path := filepath.Join(dir, strings.NewReplacer("/", "_").Replace(t.Name())+".png")
		if err := os.MkdirAll(dir, 0o755); err == nil {
			err = os.WriteFile(path, png, 0o644)
		}
		if err != nil {
			t.Logf("no screenshot: %v", err)
			return
		}
		t.Logf("screenshot of the page at the failure: %s", path)
	})
}

// do runs browser actions with a deadline.
func do(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(c, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page and decodes its value.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(c, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func logIn(t *testing.T, ctx context.Context, base string) {
	t.Helper()
	do(t, ctx, "log in",
		chromedp.Navigate(base+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), consoleToken),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#access")),
	)
}

// pageState is the data-state of the notice page open in the browser.
func pageState(t *testing.T, ctx context.Context) string {
	t.Helper()
	return eval[string](t, ctx, `document.getElementById("state").dataset.state`)
}

type timelineMark struct {
	Slot     int     `json:"slot"`
	Outcome  string  `json:"outcome"`
	Status   string  `json:"status"`
	LateMS   float64 `json:"late"`
	OffsetMS float64 `json:"offset"`
	X        float64 `json:"x"`
}

const readTimeline = `(() => {
	const marks = sel => Array.from(document.querySelectorAll(sel)).map(g => ({
		slot: +g.dataset.slot, outcome: g.dataset.outcome || "", status: g.dataset.status || "",
		late: +(g.dataset.lateMs || 0), offset: +g.dataset.offsetMs,
		x: +(g.querySelector("circle, line").getAttribute("cx") || g.querySelector("line").getAttribute("x1"))}));
	return {slots: marks("#timeline .slot"), attempts: marks("#timeline .attempt")};
})()`

// TestConsoleInTheBrowser drives the web console of a serve process with a
// real browser: log in through the form, read a notice's timeline, watch
// the live feed, and retry a given-up notice with its button.
func TestConsoleInTheBrowser(t *testing.T) {
	ctx := newBrowser(t)
	s := startConsoleServe(t, newConsolePartner(t))
	s.enqueue(t, "order-1", "/shop/notify?sign=s3cret", "0,300ms,600ms")
	s.enqueue(t, "doomed-1", "/shop/notify", "0,200ms")
	waitRows(t, s.db, 5) // order-1: 503, 503, 200; doomed-1: 503, 503

	t.Run("LogsInThroughTheForm", func(t *testing.T) {
		screenshotOnFailure(t, ctx)
		logIn(t, ctx, s.base)
		if got := eval[string](t, ctx, `document.getElementById("access").dataset.access`); got != "full" {
			t.Errorf("access %q after logging in with the API token, want full", got)
		}
		if got := eval[string](t, ctx, `location.pathname`); got != "/ui/" {
			t.Errorf("landed on %s, want the notices list /ui/", got)
		}
	})

	t.Run("TimelineShowsAttemptsAtTheirSlots", func(t *testing.T) {
		screenshotOnFailure(t, ctx)
		do(t, ctx, "open order-1", chromedp.Navigate(s.base+"/ui/notices/order-1"), chromedp.WaitVisible(chromedp.CSS("#timeline")))
		if st := pageState(t, ctx); st != "delivered" {
			t.Errorf("state %q, want delivered", st)
		}
		var tl struct{ Slots, Attempts []timelineMark }
		raw := eval[json.RawMessage](t, ctx, readTimeline)
		if err := json.Unmarshal(raw, &tl); err != nil {
			t.Fatal(err)
		}
		if len(tl.Slots) != 3 || len(tl.Attempts) != 3 {
			t.Fatalf("timeline has %d slots and %d attempts, want 3 and 3: %s", len(tl.Slots), len(tl.Attempts), raw)
		}
		wantOutcomes := []string{"retry", "retry", "delivered"}
		wantStatus := []string{"503", "503", "200"}
		for i, a := range tl.Attempts {
			slot := tl.Slots[i]
			if slot.Slot != i+1 || slot.OffsetMS != float64(300*i) {
				t.Errorf("slot %d = %+v, want #%d at stamp+%dms", i, slot, i+1, 300*i)
			}
			if a.Slot != i+1 || a.Outcome != wantOutcomes[i] || a.Status != wantStatus[i] {
				t.Errorf("attempt %d = %+v, want slot %d, %s, status %s", i, a, i+1, wantOutcomes[i], wantStatus[i])
			}
			// Generous for a shared 2-core machine under -race.
			// Lateness is measured from the attempt's due time, which is
			// its slot or later by the sender's lateness before it.
			if a.LateMS < 0 || a.LateMS > 150 || a.OffsetMS-slot.OffsetMS < a.LateMS-0.01 {
				t.Errorf("attempt %d started at stamp+%.3fms, %.3fms after its due time; want within [0, 150ms], due at or after its slot", i+1, a.OffsetMS, a.LateMS)
			}
			// Drawn at its slot: closer to its tick than to any other.
			for j, other := range tl.Slots {
				if j != i && math.Abs(other.X-a.X) < math.Abs(slot.X-a.X) {
					t.Errorf("attempt %d drawn at x=%.1f, nearer slot %d (x=%.1f) than its own (x=%.1f)", i+1, a.X, j+1, other.X, slot.X)
				}
			}
		}
		html := eval[string](t, ctx, `document.documentElement.outerHTML`)
		if strings.Contains(html, "s3cret") || strings.Contains(html, "MfKQ9r8") || strings.Contains(html, `{"order":42}`) {
			t.Error("the page shows the URL's query, the secret or the body")
		}
	})

	t.Run("LiveFeedShowsANewAttemptWithinASecond", func(t *testing.T) {
		screenshotOnFailure(t, ctx)
		do(t, ctx, "open the feed", chromedp.Navigate(s.base+"/ui/feed"),
			chromedp.Poll[chromedp.Void](`document.getElementById("feed-state").dataset.state === "live"`,
				chromedp.WithPollingTimeout(10*time.Second)))
		if n := eval[int](t, ctx, `document.querySelectorAll("#feed tbody tr").length`); n != 5 {
			t.Errorf("the feed starts with %d rows, want the 5 logged", n)
		}
		s.enqueue(t, "live-1", "/billing/notify", "0,1h")
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		received, err := chromedp.Run(c, chromedp.Poll[int64](
			`(r => r ? +r.dataset.received : 0)(document.querySelector('#feed tbody tr[data-id="live-1"]'))`,
			chromedp.WithPollingInterval(10*time.Millisecond)))
		if err != nil {
			t.Fatalf("live-1 never appeared in the feed: %v", err)
		}
		arrived := s.partner.arrivals("live-1")
		if len(arrived) != 1 {
			t.Fatalf("partner saw %d attempts of live-1, want 1", len(arrived))
		}
		lag := time.UnixMilli(received).Sub(arrived[0])
		t.Logf("attempt made at %s, in the browser %s later", arrived[0].Format("15:04:05.000"), lag)
		if lag > time.Second {
			t.Errorf("the attempt reached the browser %s after it was made, want within 1s", lag)
		}
		if top := eval[string](t, ctx, `document.querySelector("#feed tbody tr").dataset.outcome`); top != "delivered" {
			t.Errorf("newest row outcome %q, want delivered", top)
		}
	})

	t.Run("FeedFitsA1280PixelWindow", func(t *testing.T) {
		screenshotOnFailure(t, ctx)
		// A long id and path, and a partner that fails with a reply: the
		// widest rows the feed shows.
		const id = "order-2026-12-05-0000000000000000000001"
		s.enqueue(t, id, "/shop/notify/merchant-a/callbacks/payment-succeeded/v2?sign=s3cret", "0,1h")
		do(t, ctx, "open the feed", chromedp.Navigate(s.base+"/ui/feed"),
			chromedp.Poll[chromedp.Void](`document.querySelector('#feed tbody tr[data-id="`+id+`"]') !== null`,
				chromedp.WithPollingTimeout(10*time.Second)))
		var size struct{ Scroll, Client, Inner int }
		if err := json.Unmarshal(eval[json.RawMessage](t, ctx, `({scroll: document.scrollingElement.scrollWidth,
			client: document.scrollingElement.clientWidth, inner: window.innerWidth})`), &size); err != nil {
			t.Fatal(err)
		}
		if size.Inner != 1280 {
			t.Fatalf("window is %d px wide, want 1280", size.Inner)
		}
		if size.Scroll > size.Client {
			t.Errorf("/ui/feed is %d px wide in a %d px window: it scrolls sideways", size.Scroll, size.Client)
		}
	})

	t.Run("TimelineLabelsOfAJustEnqueuedNoticeDoNotOverlap", func(t *testing.T) {
		// fresh-1 has made its first attempt at the stamp and waits an
		// hour; fresh-2 waits for its first, ten minutes out. Either way
		// now is a hair after the stamp.
		s.enqueue(t, "fresh-1", "/shop/notify", "0,1h")
		s.enqueue(t, "fresh-2", "/shop/notify", "10m,1h")
		deadline := time.Now().Add(10 * time.Second)
		for len(s.partner.arrivals("fresh-1")) == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // the partner's own record of the attempt
		}
		for _, id := range []string{"fresh-1", "fresh-2"} {
			t.Run(id, func(t *testing.T) {
				screenshotOnFailure(t, ctx)
				do(t, ctx, "open "+id, chromedp.Navigate(s.base+"/ui/notices/"+id), chromedp.WaitVisible(chromedp.CSS("#timeline")))
				var labels []struct {
					Text                     string
					Left, Top, Right, Bottom float64
				}
				raw := eval[json.RawMessage](t, ctx, `Array.from(document.querySelectorAll("#timeline text")).map(e => {
					const r = e.getBoundingClientRect();
					return {text: e.textContent, left: r.left, top: r.top, right: r.right, bottom: r.bottom};
				})`)
				if err := json.Unmarshal(raw, &labels); err != nil {
					t.Fatal(err)
				}
				var texts []string
				for _, l := range labels {
					texts = append(texts, l.Text)
				}
				if !slices.Contains(texts, "now") || !slices.Contains(texts, "stamp") {
					t.Fatalf("timeline labels %q, want now and stamp among them", texts)
				}
				// Boxes of adjacent lines may touch; 1 px of overlap is
				// rounding, more is text drawn over text.
				const slack = 1
				for i, a := range labels {
					for _, b := range labels[i+1:] {
						if min(a.Right, b.Right)-max(a.Left, b.Left) > slack && min(a.Bottom, b.Bottom)-max(a.Top, b.Top) > slack {
							t.Errorf("labels %q %+v and %q %+v overlap", a.Text, a, b.Text, b)
						}
					}
				}
			})
		}
	})

	t.Run("RetryButtonSendsAGivenUpNoticeAgain", func(t *testing.T) {
		screenshotOnFailure(t, ctx)
		do(t, ctx, "open doomed-1", chromedp.Navigate(s.base+"/ui/notices/doomed-1"), chromedp.WaitVisible(chromedp.CSS("#state")))
		if st := pageState(t, ctx); st != "gave-up" {
			t.Fatalf("state %q, want gave-up", st)
		}
		do(t, ctx, "click retry", chromedp.Click(chromedp.CSS("#retry")), chromedp.WaitVisible(chromedp.CSS("#flash")))
		if st := pageState(t, ctx); st != "pending" && st != "delivered" {
			t.Errorf("state %q right after retry, want pending or delivered", st)
		}
		// Redis may know of the delivery a moment before the attempt log
		// has its row: wait for the page to show both.
		deliveredAtSlot1 := func() int {
			return eval[int](t, ctx, `document.querySelectorAll('#timeline .attempt[data-outcome="delivered"][data-slot="1"]').length`)
		}
		deadline := time.Now().Add(10 * time.Second)
		for pageState(t, ctx) != "delivered" || deliveredAtSlot1() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("doomed-1 still %s 10s after retry, %d delivered attempts at slot 1", pageState(t, ctx), deliveredAtSlot1())
			}
			time.Sleep(100 * time.Millisecond) // the page is server-rendered: reload it
			do(t, ctx, "reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#state")))
		}
		if n := len(s.partner.arrivals("doomed-1")); n != 3 {
			t.Errorf("partner saw %d attempts of doomed-1, want 2 and the retry", n)
		}
		if got := deliveredAtSlot1(); got != 1 {
			t.Errorf("the retried send's timeline has %d delivered attempts at slot 1, want 1", got)
		}
	})
}

// TestConsoleScreenshots rewrites the README's two screenshots of the web
// console from a real serve: go test -run TestConsoleScreenshots -args -screenshots
func TestConsoleScreenshots(t *testing.T) {
	if !*screenshots {
		t.Skip("rewrites testdata/screenshots/*.png: go test -run TestConsoleScreenshots -args -screenshots")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "notifier.toml")
	ctx := newBrowser(t)
	p := newConsolePartner(t)
	writeFile(t, cfg, fmt.Sprintf("[[partner]]\nname = \"shop\"\nurl_prefix = [\"%[1]s/shop/\"]\n\n"+
		"[[partner]]\nname = \"billing\"\nurl_prefix = [\"%[1]s/billing/\"]\n\n"+
		"[[partner]]\nname = \"legacy\"\nurl_prefix = [\"%[1]s/legacy/\"]\n", p.URL))
	s := startConsoleServe(t, p, "--config", cfg)
	screenshotOnFailure(t, ctx)
	logIn(t, ctx, s.base)

	s.enqueue(t, "order-1042", "/shop/alipay/notify?sign=x", "0,300ms,600ms,1s,1.5s,2s")
	s.enqueue(t, "invoice-77", "/billing/hooks", "0,10s")
	waitRows(t, s.db, 4)
	do(t, ctx, "open the feed", chromedp.Navigate(s.base+"/ui/feed"),
		chromedp.Poll[chromedp.Void](`document.getElementById("feed-state").dataset.state === "live"`))
	s.enqueue(t, "order-1043", "/shop/alipay/notify", "0,250ms,500ms")
	s.enqueue(t, "invoice-78", "/billing/hooks", "0,10s")
	s.enqueue(t, "legacy-9", "/legacy/callback", "0,10s,30s")
	waitRows(t, s.db, 9)
	time.Sleep(2 * time.Second) // let the rows' arrival highlight fade
	shoot(t, ctx, "live-feed.png")

	do(t, ctx, "open order-1042", chromedp.EmulateViewport(1100, 700), chromedp.Navigate(s.base+"/ui/notices/order-1042"),
		chromedp.WaitVisible(chromedp.CSS("#timeline")))
	shoot(t, ctx, "notice-timeline.png")
}

func shoot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(c, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "screenshots", name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}
