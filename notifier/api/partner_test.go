package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/notifier/api"
	"github.com/notifier/notifier/store"
	"github.com/notifier/notifier/store/redistest"
	"github.com/notifier/notifier/store/storetest"
)

const (
	shopToken  = "shop-portal-token-0123456789"
	shopToken2 = "shop-portal-token-rotated-42"
	bankToken  = "bank-portal-token-0123456789"
	soloToken  = "solo-portal-token-0123456789"
	shopSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	shopPrefix = "http://127.0.0.1:9/shop/"
	bankPrefix = "http://127.0.0.1:9/bank/"
)

// partnerEnv is serve's HTTP surface (operator API with metrics, and the
// partner API) over a private redis-server and a real attempt log, with
// three partners: shop (two tokens, a secret), bank, and solo (no
// url_prefix).
type partnerEnv struct {
	t    testing.TB
	q    *store.Redis
	log  *store.SQLite
	url  string
	logs *syncBuffer
}

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

func newPartnerEnv(t testing.TB, configure func(*notifier.PortalConfig)) *partnerEnv {
	t.Helper()
	srv := redistest.Start(t)
	log, _ := storetest.StartLog(t)
	e := &partnerEnv{t: t, q: store.NewRedis(srv.Client(), "", nil), log: log, logs: &syncBuffer{}}
	sec, err := notifier.ParseSecret(shopSecret)
	if err != nil {
		t.Fatal(err)
	}
	partners := []*notifier.Partner{
		{Name: "shop", Prefixes: []string{shopPrefix}, Secrets: []notifier.Secret{sec}, PortalTokens: []string{shopToken, shopToken2}},
		{Name: "bank", Prefixes: []string{bankPrefix}, PortalTokens: []string{bankToken}},
		{Name: "solo", PortalTokens: []string{soloToken}},
	}
	sums, err := notifier.NewPartners(partners, 0).Summaries()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.q.PublishPartners(context.Background(), sums); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(e.logs, nil))
	pc := notifier.PortalConfig{Queue: e.q, Log: log, Partners: partners, Reserved: []string{token}, Logger: logger}
	if configure != nil {
		configure(&pc)
	}
	portal, err := notifier.NewPortal(pc)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := api.New(api.Server{Queue: e.q, Log: log, Token: token, Metrics: api.NewMetrics(prometheus.NewRegistry(), api.MetricsSource{})})
	if err != nil {
		t.Fatal(err)
	}
	pa, err := api.NewPartner(api.PartnerServer{Portal: portal, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/partner/", pa)
	mux.Handle("/", ops)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	e.url = hs.URL
	return e
}

func (e *partnerEnv) do(method, path, auth, body string) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, b
}

// ended logs a notice of partner that ended with outcome o (after a retry
// attempt), as serve logs it: the attempt log archives it.
func (e *partnerEnv) ended(id, partner string, o notifier.Outcome) notifier.Notice {
	e.t.Helper()
	stamp := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	prefix := map[string]string{"shop": shopPrefix, "bank": bankPrefix}[partner]
	n := notifier.Notice{ID: id, URL: prefix + "notify?sign=s3cret", Body: []byte(`{"order":"` + id + `"}`),
		Schedule: backoff.Schedule{0, time.Second}, Stamp: stamp, Partner: partner}
	status := map[notifier.Outcome]int{notifier.Delivered: 200, notifier.GaveUp: 500}[o]
	ctx := context.Background()
	for _, a := range []notifier.Attempt{
		{NoticeID: id, Stamp: stamp, N: 1, Due: stamp, Start: stamp, Duration: time.Millisecond, URL: notifier.RedactURL(n.URL),
			Status: 503, Outcome: notifier.Retry, Partner: partner, Next: stamp.Add(time.Second)},
		{NoticeID: id, Stamp: stamp, N: 2, Due: stamp.Add(time.Second), Start: stamp.Add(time.Second), Duration: time.Millisecond,
			URL: notifier.RedactURL(n.URL), Status: status, Outcome: o, Partner: partner, Ended: &n},
	} {
		if err := e.log.Record(ctx, a); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := e.log.Sync(ctx); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// pending stores a notice of partner stamped at stamp, due in an hour.
func (e *partnerEnv) pending(id, partner string, stamp time.Time) {
	e.t.Helper()
	prefix := map[string]string{"shop": shopPrefix, "bank": bankPrefix}[partner]
	n := notifier.Notice{ID: id, URL: prefix + "notify", Body: []byte("pending " + id), Schedule: backoff.Schedule{time.Hour},
		Stamp: stamp.Truncate(time.Millisecond), Partner: partner}
	errs, err := e.q.Enqueue(context.Background(), []notifier.Notice{n})
	if err == nil {
		err = errs[0]
	}
	if err != nil {
		e.t.Fatal(err)
	}
}

// pullAll follows the cursor from since until a page says no more, and
// returns the ids in order and the last cursor.
func (e *partnerEnv) pullAll(tok, state, since string, limit int) ([]notifier.PulledNotice, string) {
	e.t.Helper()
	var all []notifier.PulledNotice
	for range 100 {
		q := url.Values{"limit": {strconv.Itoa(limit)}}
		if state != "" {
			q.Set("state", state)
		}
		if since != "" {
			q.Set("since", since)
		}
		resp, b := e.do("GET", "/v1/partner/notices?"+q.Encode(), tok, "")
		if resp.StatusCode != http.StatusOK {
			e.t.Fatalf("pull: %d %s", resp.StatusCode, b)
		}
		var page notifier.PullPage
		if err := json.Unmarshal(b, &page); err != nil {
			e.t.Fatal(err)
		}
		if len(page.Notices) > limit {
			e.t.Errorf("a page of %d notices, limit %d", len(page.Notices), limit)
		}
		all = append(all, page.Notices...)
		if page.Next == "" {
			e.t.Fatalf("page without a cursor: %s", b)
		}
		since = page.Next
		if !page.More {
			return all, since
		}
	}
	e.t.Fatal("the pull never ended")
	return nil, ""
}

func ids(ns []notifier.PulledNotice) string {
	var s []string
	for _, n := range ns {
		s = append(s, n.ID)
	}
	return strings.Join(s, ",")
}

func TestPartnerPull(t *testing.T) {
	e := newPartnerEnv(t, nil)
	e.ended("s1", "shop", notifier.Delivered)
	e.ended("b1", "bank", notifier.Delivered)
	e.ended("s2", "shop", notifier.GaveUp)
	e.ended("s3", "shop", notifier.Delivered)
	e.ended("b2", "bank", notifier.GaveUp)
	e.ended("s4", "shop", notifier.GaveUp)
	e.ended("s5", "shop", notifier.Delivered)

	t.Run("EndedNoticesInTheOrderTheyEndedWithACursor", func(t *testing.T) {
		got, cursor := e.pullAll(shopToken, "", "", 2)
		if ids(got) != "s1,s2,s3,s4,s5" {
			t.Errorf("pulled %s, want s1,s2,s3,s4,s5 (shop's, in the order they ended; never bank's)", ids(got))
		}
		for _, n := range got {
			want := map[string]notifier.State{"s2": notifier.StateGaveUp, "s4": notifier.StateGaveUp}[n.ID]
			if want == "" {
				want = notifier.StateDelivered
			}
			if n.State != want || n.Attempts != 2 || n.Ended == nil || strings.Contains(n.URL, "s3cret") {
				t.Errorf("pulled %+v, want state %s after 2 attempts, an end time, no query string", n, want)
			}
		}
		// Nothing new: the same cursor comes back.
		again, next := e.pullAll(shopToken, "", cursor, 2)
		if len(again) != 0 || next != cursor {
			t.Errorf("pull after the end: %s, cursor %q; want none and %q", ids(again), next, cursor)
		}
		// A notice that ends later is found from the cursor.
		e.ended("s6", "shop", notifier.Delivered)
		if more, _ := e.pullAll(shopToken, "", cursor, 2); ids(more) != "s6" {
			t.Errorf("pull after s6 ended: %s, want s6", ids(more))
		}
	})

	t.Run("StateSelectsOneOutcome", func(t *testing.T) {
		if got, _ := e.pullAll(shopToken, "gave-up", "", 10); ids(got) != "s2,s4" {
			t.Errorf("gave-up: %s, want s2,s4", ids(got))
		}
		if got, _ := e.pullAll(bankToken, "delivered", "", 10); ids(got) != "b1" {
			t.Errorf("bank's delivered: %s, want b1", ids(got))
		}
	})

	t.Run("PendingByStampThenID", func(t *testing.T) {
		base := time.Now()
		e.pending("p-b", "shop", base)
		e.pending("p-a", "shop", base)
		e.pending("p-c", "shop", base.Add(-time.Second))
		e.pending("p-bank", "bank", base)
		got, cursor := e.pullAll(shopToken2, "pending", "", 2)
		if ids(got) != "p-c,p-a,p-b" {
			t.Errorf("pending: %s, want p-c,p-a,p-b (stamp, then id; never bank's)", ids(got))
		}
		for _, n := range got {
			if n.State != notifier.StatePending || n.NextDue == nil || n.Attempts != 1 {
				t.Errorf("pending notice %+v: want state pending, attempt 1 and its due time", n)
			}
		}
		e.pending("p-d", "shop", base.Add(time.Second))
		if more, _ := e.pullAll(shopToken, "pending", cursor, 2); ids(more) != "p-d" {
			t.Errorf("pending after the cursor: %s, want p-d", ids(more))
		}
	})

	t.Run("BadParametersAre400", func(t *testing.T) {
		_, endedCursor := e.pullAll(shopToken, "", "", 100)
		for _, q := range []string{"since=garbage!", "since=" + endedCursor + "&state=pending",
			"since=" + endedCursor + "&state=gave-up", "limit=0", "limit=1001",
			"limit=x", "state=cancelled", "since=" + base64.RawURLEncoding.EncodeToString([]byte("a-5"))} {
			resp, b := e.do("GET", "/v1/partner/notices?"+q, shopToken, "")
			if resp.StatusCode != http.StatusBadRequest || !bytes.HasPrefix(b, []byte(`{"error":`)) {
				t.Errorf("?%s: %d %s, want 400 with a JSON error", q, resp.StatusCode, b)
			}
		}
	})
}

func TestPartnerNoticeBody(t *testing.T) {
	e := newPartnerEnv(t, nil)
	n := e.ended("order-7", "shop", notifier.GaveUp)
	sec, _ := notifier.ParseSecret(shopSecret)

	t.Run("JSONCarriesTheBodyAndASignatureThatVerifies", func(t *testing.T) {
		resp, b := e.do("GET", "/v1/partner/notices/order-7", shopToken, "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		var got struct {
			ID, State, URL string
			Body           *string
			BodyBase64     []byte `json:"body_base64"`
			Webhook        map[string]string
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if got.ID != "order-7" || got.State != "gave-up" || !bytes.Equal(got.BodyBase64, n.Body) || got.Body == nil || *got.Body != string(n.Body) {
			t.Errorf("got %s, want order-7, gave-up, its body", b)
		}
		if strings.Contains(got.URL, "s3cret") {
			t.Errorf("url %q keeps its query string", got.URL)
		}
		ts, _ := strconv.ParseInt(got.Webhook["webhook-timestamp"], 10, 64)
		if err := notifier.Verify(got.Webhook["webhook-signature"], []notifier.Secret{sec}, got.Webhook["webhook-id"],
			time.Unix(ts, 0), got.BodyBase64, time.Now(), 5*time.Minute); err != nil || got.Webhook["webhook-id"] != "order-7" {
			t.Errorf("signature %v does not verify: %v", got.Webhook, err)
		}
	})

	t.Run("RawIsTheBodyWithWebhookHeaders", func(t *testing.T) {
		resp, b := e.do("GET", "/v1/partner/notices/order-7?format=raw", shopToken, "")
		if resp.StatusCode != http.StatusOK || !bytes.Equal(b, n.Body) {
			t.Fatalf("%d %q, want 200 and the body", resp.StatusCode, b)
		}
		ts, _ := strconv.ParseInt(resp.Header.Get("Webhook-Timestamp"), 10, 64)
		if err := notifier.Verify(resp.Header.Get("Webhook-Signature"), []notifier.Secret{sec}, resp.Header.Get("Webhook-Id"),
			time.Unix(ts, 0), b, time.Now(), 5*time.Minute); err != nil {
			t.Errorf("headers %v do not verify: %v", resp.Header, err)
		}
	})

	t.Run("AParkedNoticeToo", func(t *testing.T) {
		// As serve parks it while its partner is paused: the receiver
		// that was down is the one that wants it.
		ctx := context.Background()
		stamp := time.Now().Truncate(time.Millisecond)
		n := notifier.Notice{ID: "parked-1", URL: shopPrefix + "notify", Body: []byte("pending parked-1"), Schedule: backoff.Schedule{0},
			Stamp: stamp, Partner: "shop"}
		if errs, err := e.q.Enqueue(ctx, []notifier.Notice{n}); err != nil || errs[0] != nil {
			t.Fatal(err, errs)
		}
		_, jobs, err := e.q.Claim(ctx, []notifier.Trigger{{ID: "parked-1", Stamp: stamp, N: 1}}, time.Minute)
		if err != nil || len(jobs) != 1 {
			t.Fatalf("claim: %v, %d jobs", err, len(jobs))
		}
		if ok, err := e.q.Park(ctx, jobs[0], "shop"); err != nil || !ok {
			t.Fatalf("park: %v %v", ok, err)
		}
		resp, b := e.do("GET", "/v1/partner/notices/parked-1?format=raw", shopToken, "")
		if resp.StatusCode != http.StatusOK || string(b) != "pending parked-1" || resp.Header.Get("Notice-State") != "parked" {
			t.Errorf("%d %q state %q, want 200, its body, parked", resp.StatusCode, b, resp.Header.Get("Notice-State"))
		}
		if got, _ := e.pullAll(shopToken, "pending", "", 10); ids(got) != "parked-1" || got[0].State != notifier.StateParked {
			t.Errorf("pending pull: %+v, want parked-1 as parked", got)
		}
		if resp, _ := e.do("GET", "/v1/partner/notices/parked-1", bankToken, ""); resp.StatusCode != http.StatusNotFound {
			t.Errorf("bank reads shop's parked notice: %d, want 404", resp.StatusCode)
		}
	})

	t.Run("APendingNoticeToo", func(t *testing.T) {
		e.pending("wait-1", "bank", time.Now())
		resp, b := e.do("GET", "/v1/partner/notices/wait-1?format=raw", bankToken, "")
		if resp.StatusCode != http.StatusOK || string(b) != "pending wait-1" || resp.Header.Get("Notice-State") != "pending" {
			t.Errorf("%d %q state %q, want 200, its body, pending", resp.StatusCode, b, resp.Header.Get("Notice-State"))
		}
	})
}

// TestPartnerIsolation: on every route, a partner token reaches only its
// partner's notices (another's are 404, exactly as unknown ones), and
// neither the operator's routes nor /metrics; the operator's token is not
// a partner's.
func TestPartnerIsolation(t *testing.T) {
	e := newPartnerEnv(t, nil)
	e.ended("shop-1", "shop", notifier.GaveUp)
	e.pending("shop-2", "shop", time.Now())
	e.ended("bank-1", "bank", notifier.GaveUp)

	t.Run("OtherPartnersNoticesAre404LikeUnknownOnes", func(t *testing.T) {
		routes := []struct{ method, path string }{
			{"GET", "/v1/partner/notices/%s"}, {"GET", "/v1/partner/notices/%s?format=raw"},
			{"POST", "/v1/partner/notices/%s/retry"},
		}
		for _, r := range routes {
			for _, id := range []string{"shop-1", "shop-2"} {
				resp, b := e.do(r.method, strings.Replace(r.path, "%s", id, 1), bankToken, "")
				uresp, ub := e.do(r.method, strings.Replace(r.path, "%s", "nosuch", 1), bankToken, "")
				same := strings.Replace(string(b), id, "X", 1) == strings.Replace(string(ub), "nosuch", "X", 1)
				if resp.StatusCode != http.StatusNotFound || uresp.StatusCode != http.StatusNotFound || !same {
					t.Errorf("bank %s %s: %d %s; unknown id: %d %s; want the same 404", r.method, r.path, resp.StatusCode, b, uresp.StatusCode, ub)
				}
				if bytes.Contains(b, []byte("order")) || bytes.Contains(b, []byte("pending")) {
					t.Errorf("the 404 says something of the notice: %s", b)
				}
			}
		}
		if got, _ := e.pullAll(bankToken, "", "", 100); ids(got) != "bank-1" {
			t.Errorf("bank pulls %s, want bank-1 only", ids(got))
		}
		if got, _ := e.pullAll(bankToken, "pending", "", 100); len(got) != 0 {
			t.Errorf("bank pulls pending %s, want none", ids(got))
		}
		if st := e.q; st != nil {
			if s, _ := st.State(context.Background(), "shop-1"); s == notifier.StatePending {
				t.Error("bank's retry of shop-1 sent it again")
			}
		}
	})

	t.Run("OperatorRoutesAndMetricsRefusePartnerTokens", func(t *testing.T) {
		for _, r := range []struct{ method, path, body string }{
			{"POST", "/v1/notices", `{"url":"http://127.0.0.1:9/shop/x","body":{}}`},
			{"GET", "/v1/notices/shop-1", ""}, {"POST", "/v1/notices/shop-1/retry", ""},
			{"DELETE", "/v1/notices/shop-2", ""}, {"GET", "/metrics", ""}, {"GET", "/v1/anything", ""},
		} {
			for _, tok := range []string{shopToken, bankToken} {
				if resp, b := e.do(r.method, r.path, tok, r.body); resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("partner token on %s %s: %d %s, want 401", r.method, r.path, resp.StatusCode, b)
				}
			}
		}
		if s, _ := e.q.State(context.Background(), "shop-2"); s != notifier.StatePending {
			t.Errorf("shop-2 is %s after a partner tried to cancel it, want pending", s)
		}
	})

	t.Run("PartnerRoutesRefuseOtherTokens", func(t *testing.T) {
		for _, r := range []struct{ method, path string }{
			{"GET", "/v1/partner/notices"}, {"GET", "/v1/partner/notices/shop-1"},
			{"POST", "/v1/partner/notices/shop-1/retry"}, {"POST", "/v1/partner/test"}, {"GET", "/v1/partner/other"},
		} {
			for _, tok := range []string{"", token, shopToken + "x", shopToken[:16], strings.ToUpper(shopToken)} {
				if resp, b := e.do(r.method, r.path, tok, ""); resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("token %q on %s %s: %d %s, want 401", tok, r.method, r.path, resp.StatusCode, b)
				}
			}
		}
	})

	t.Run("WrongMethodsAre405", func(t *testing.T) {
		for _, r := range []struct{ method, path string }{
			{"POST", "/v1/partner/notices"}, {"DELETE", "/v1/partner/notices/shop-1"},
			{"GET", "/v1/partner/notices/shop-1/retry"}, {"GET", "/v1/partner/test"},
		} {
			if resp, b := e.do(r.method, r.path, shopToken, ""); resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("%s %s: %d %s, want 405", r.method, r.path, resp.StatusCode, b)
			}
		}
	})
}

func TestPartnerResend(t *testing.T) {
	e := newPartnerEnv(t, func(c *notifier.PortalConfig) { c.ActionRate, c.ActionBurst = rate.Every(time.Hour), 2 })
	e.ended("r-1", "shop", notifier.GaveUp)
	e.ended("r-2", "shop", notifier.Delivered)
	e.ended("r-3", "shop", notifier.GaveUp)

	resp, b := e.do("POST", "/v1/partner/notices/r-1/retry", shopToken2, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("retry r-1: %d %s", resp.StatusCode, b)
	}
	if s, _ := e.q.State(context.Background(), "r-1"); s != notifier.StatePending {
		t.Errorf("r-1 is %s after its re-send, want pending", s)
	}
	if resp, b := e.do("POST", "/v1/partner/notices/r-1/retry", shopToken, ""); resp.StatusCode != http.StatusConflict {
		t.Errorf("retry of a pending notice: %d %s, want 409", resp.StatusCode, b)
	}
	if resp, b := e.do("POST", "/v1/partner/notices/r-2/retry", shopToken, ""); resp.StatusCode != http.StatusOK {
		t.Errorf("retry r-2: %d %s, want 200", resp.StatusCode, b)
	}
	// The bucket of 2 is empty: the third is refused, and nothing is sent.
	resp, b = e.do("POST", "/v1/partner/notices/r-3/retry", shopToken, "")
	if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); resp.StatusCode != http.StatusTooManyRequests || ra < 1 {
		t.Errorf("third retry: %d Retry-After %q %s, want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	if s, err := e.q.State(context.Background(), "r-3"); err == nil && s == notifier.StatePending {
		t.Error("r-3 was sent again over the rate limit")
	}
	// Another partner has its own bucket.
	e.ended("b-9", "bank", notifier.GaveUp)
	if resp, b := e.do("POST", "/v1/partner/notices/b-9/retry", bankToken, ""); resp.StatusCode != http.StatusOK {
		t.Errorf("bank's retry: %d %s, want 200", resp.StatusCode, b)
	}
	logs := e.logs.String()
	for _, want := range []string{"token=" + notifier.TokenFingerprint(shopToken2) + " id=r-1",
		"token=" + notifier.TokenFingerprint(shopToken) + " id=r-2", "rate limit"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	for _, tok := range []string{shopToken, shopToken2, bankToken} {
		if strings.Contains(logs, tok) {
			t.Errorf("log holds a token:\n%s", logs)
		}
	}
}

func TestPartnerTestNotice(t *testing.T) {
	e := newPartnerEnv(t, nil)
	resp, b := e.do("POST", "/v1/partner/test", shopToken, "")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("test notice: %d %s", resp.StatusCode, b)
	}
	var got struct{ ID string }
	_ = json.Unmarshal(b, &got)
	p, err := e.q.Pending(context.Background(), got.ID)
	if err != nil || p.Notice.URL != shopPrefix || p.Notice.Partner != "shop" || len(p.Notice.Schedule) != 1 ||
		!bytes.Contains(p.Notice.Body, []byte(`"type":"notifier.test"`)) {
		t.Errorf("stored %+v (%v), want one attempt to %s under shop, a test body", p.Notice, err, shopPrefix)
	}
	if resp, b := e.do("POST", "/v1/partner/test", shopToken, `{"url":"`+shopPrefix+`hooks/a"}`); resp.StatusCode != http.StatusCreated {
		t.Errorf("test notice under the prefix: %d %s, want 201", resp.StatusCode, b)
	}
	for _, u := range []string{bankPrefix + "x", "http://127.0.0.1:9/shopx", "http://127.0.0.1:10/shop/"} {
		if resp, b := e.do("POST", "/v1/partner/test", shopToken, `{"url":"`+u+`"}`); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("test notice to %s: %d %s, want 400", u, resp.StatusCode, b)
		}
	}
	if resp, b := e.do("POST", "/v1/partner/test", soloToken, ""); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("test notice of a partner without url_prefix: %d %s, want 400", resp.StatusCode, b)
	}
	if resp, b := e.do("POST", "/v1/partner/test", shopToken, `{"url":`); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("malformed body: %d %s, want 400", resp.StatusCode, b)
	}
}

// BenchmarkPartnerPull measures one page of 100 through HTTP, with 10,000
// notices pending (half of them shop's) and 10,000 ended (two attempts
// each, half shop's): go test -run '^$' -bench PartnerPull ./notifier/api/
func BenchmarkPartnerPull(b *testing.B) {
	e := newPartnerEnv(b, nil)
	ctx := context.Background()
	const total = 10000
	now := time.Now().Truncate(time.Millisecond)
	var ns []notifier.Notice
	for i := range total {
		partner, prefix := "shop", shopPrefix
		if i%2 == 1 {
			partner, prefix = "bank", bankPrefix
		}
		ns = append(ns, notifier.Notice{ID: "p-" + strconv.Itoa(i), URL: prefix + "n", Body: bytes.Repeat([]byte("x"), 200),
			Schedule: backoff.Schedule{time.Hour}, Stamp: now.Add(time.Duration(i) * time.Millisecond), Partner: partner})
		if len(ns) == 1000 {
			if _, err := e.q.Enqueue(ctx, ns); err != nil {
				b.Fatal(err)
			}
			ns = ns[:0]
		}
		n := notifier.Notice{ID: "e-" + strconv.Itoa(i), URL: prefix + "n", Body: []byte("{}"), Schedule: backoff.Schedule{0, time.Second},
			Stamp: now, Partner: partner}
		for _, a := range []notifier.Attempt{
			{NoticeID: n.ID, Stamp: now, N: 1, Due: now, Start: now, URL: n.URL, Status: 503, Outcome: notifier.Retry, Partner: partner},
			{NoticeID: n.ID, Stamp: now, N: 2, Due: now, Start: now, URL: n.URL, Status: 200, Outcome: notifier.Delivered, Partner: partner, Ended: &n},
		} {
			if err := e.log.Record(ctx, a); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := e.log.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	get := func(b *testing.B, q string) {
		req, _ := http.NewRequest("GET", e.url+"/v1/partner/notices?"+q, nil)
		req.Header.Set("Authorization", "Bearer "+shopToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("%v %v", err, resp)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	b.Run("Pending", func(b *testing.B) {
		for b.Loop() {
			get(b, "state=pending&limit=100")
		}
	})
	b.Run("Ended", func(b *testing.B) {
		for b.Loop() {
			get(b, "limit=100")
		}
	})
}
