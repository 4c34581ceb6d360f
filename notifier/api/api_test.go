package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/notifier/api"
	"github.com/notifier/notifier/store"
	"github.com/notifier/notifier/store/redistest"
	"github.com/notifier/notifier/store/storetest"
)

const token = "test-token-0123456789abcdef"

// env is a running API on a private redis-server and a real attempt log.
type env struct {
	t   *testing.T
	rdb *redis.Client
	q   *store.Redis
	log *store.SQLite
	url string
}

// newEnv starts the API; configure, if set, adjusts the Server first.
func newEnv(t *testing.T, configure func(*api.Server)) *env {
	t.Helper()
	srv := redistest.Start(t)
	rdb := srv.Client()
	log, _ := storetest.StartLog(t)
	e := &env{t: t, rdb: rdb, q: store.NewRedis(rdb, "", nil), log: log}
	s := api.Server{Queue: e.q, Log: log, Token: token}
	if configure != nil {
		configure(&s)
	}
	h, err := api.New(s)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	e.url = hs.URL
	return e
}

// do sends a request with the bearer token auth ("" sends no
// Authorization header) and returns the response with its body read.
func (e *env) do(method, path, auth, body string) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
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

// expect sends a request with the token and fails the test unless the
// answer has status want.
func (e *env) expect(want int, method, path, body string) (*http.Response, []byte) {
	e.t.Helper()
	resp, b := e.do(method, path, token, body)
	if resp.StatusCode != want {
		e.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, resp.StatusCode, want, b)
	}
	return resp, b
}

// errorOf returns the "error" of a JSON error answer, failing the test if
// the answer is not one.
func errorOf(t *testing.T, resp *http.Response, b []byte) string {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(b, &e); err != nil || e.Error == "" {
		t.Fatalf("want {\"error\": ...}, got %s (%v)", b, err)
	}
	if strings.Contains(e.Error, "\n") {
		t.Errorf("error %q spans lines", e.Error)
	}
	return e.Error
}

type noticeBody struct {
	Status   notifier.Status        `json:"status"`
	Attempts []notifier.AttemptJSON `json:"attempts"`
}

func (e *env) get(id string) noticeBody {
	e.t.Helper()
	_, b := e.expect(http.StatusOK, "GET", "/v1/notices/"+id, "")
	var nb noticeBody
	if err := json.Unmarshal(b, &nb); err != nil {
		e.t.Fatalf("GET %s: %v in %s", id, err, b)
	}
	if nb.Attempts == nil {
		e.t.Errorf("GET %s: attempts is %s, want a list", id, b)
	}
	return nb
}

func TestEnqueue(t *testing.T) {
	e := newEnv(t, nil)

	t.Run("CreatesThenRefusesTheSameID", func(t *testing.T) {
		body := `{"id":"order-1","url":"http://127.0.0.1:9/hook","body":{"paid":true},"headers":{"X-Shop":"1"},"schedule":"1h"}`
		resp, b := e.expect(http.StatusCreated, "POST", "/v1/notices", body)
		var got struct{ ID string }
		if err := json.Unmarshal(b, &got); err != nil || got.ID != "order-1" {
			t.Errorf("body %s, want id order-1", b)
		}
		if loc := resp.Header.Get("Location"); loc != "/v1/notices/order-1" {
			t.Errorf("Location %q, want /v1/notices/order-1", loc)
		}
		resp, b = e.expect(http.StatusConflict, "POST", "/v1/notices", body)
		if msg := errorOf(t, resp, b); !strings.Contains(msg, "already pending") {
			t.Errorf("error %q, want it to say already pending", msg)
		}
	})

	t.Run("GeneratesAnIDAndEscapesItInLocation", func(t *testing.T) {
		_, b := e.expect(http.StatusCreated, "POST", "/v1/notices", `{"url":"http://127.0.0.1:9/hook","schedule":"1h"}`)
		var got struct{ ID string }
		if err := json.Unmarshal(b, &got); err != nil || !strings.HasPrefix(got.ID, "n_") {
			t.Errorf("body %s, want a generated id n_...", b)
		}
		resp, _ := e.expect(http.StatusCreated, "POST", "/v1/notices", `{"id":"shop/order#2","url":"http://127.0.0.1:9/hook","schedule":"1h"}`)
		loc := resp.Header.Get("Location")
		if loc != "/v1/notices/shop%2Forder%232" {
			t.Fatalf("Location %q, want /v1/notices/shop%%2Forder%%232", loc)
		}
		if st := e.get("shop%2Forder%232").Status; st.ID != "shop/order#2" || st.State != notifier.StatePending {
			t.Errorf("GET Location: %+v, want shop/order#2 pending", st)
		}
	})

	t.Run("BadURLIs400WithoutEchoingSecretsOrBody", func(t *testing.T) {
		secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		resp, b := e.expect(http.StatusBadRequest, "POST", "/v1/notices",
			`{"id":"bad-1","url":"ftp://127.0.0.1/x","body":"sensitive-body","secrets":["`+secret+`"]}`)
		msg := errorOf(t, resp, b)
		if !strings.Contains(msg, "scheme") {
			t.Errorf("error %q, want it to name the scheme", msg)
		}
		if strings.Contains(string(b), "sensitive-body") || strings.Contains(string(b), "MfKQ9r8") {
			t.Errorf("error %s echoes the body or the secret", b)
		}
	})

	t.Run("BadSecretIs400WithoutEchoingIt", func(t *testing.T) {
		resp, b := e.expect(http.StatusBadRequest, "POST", "/v1/notices",
			`{"url":"http://127.0.0.1:9/hook","secrets":["whsec_not!base64-sekrit"]}`)
		if msg := errorOf(t, resp, b); strings.Contains(msg, "sekrit") {
			t.Errorf("error %q echoes the secret", msg)
		}
	})

	t.Run("BadScheduleIs400", func(t *testing.T) {
		resp, b := e.expect(http.StatusBadRequest, "POST", "/v1/notices", `{"url":"http://127.0.0.1:9/hook","schedule":"10,5"}`)
		errorOf(t, resp, b)
	})

	t.Run("UnknownFieldIs400", func(t *testing.T) {
		resp, b := e.expect(http.StatusBadRequest, "POST", "/v1/notices", `{"url":"http://127.0.0.1:9/hook","colour":"blue"}`)
		if msg := errorOf(t, resp, b); !strings.Contains(msg, "colour") {
			t.Errorf("error %q, want it to name the field", msg)
		}
	})

	t.Run("MalformedAndTrailingJSONAre400", func(t *testing.T) {
		for _, body := range []string{``, `{"url":`, `[1]`, `{"url":"http://127.0.0.1:9/hook"} {}`, `{"secrets":"x"}`} {
			resp, b := e.expect(http.StatusBadRequest, "POST", "/v1/notices", body)
			errorOf(t, resp, b)
		}
	})

	t.Run("OversizeBodyIs413", func(t *testing.T) {
		big := `{"url":"http://127.0.0.1:9/hook","body":"` + strings.Repeat("a", api.MaxRequestBytes) + `"}`
		resp, b := e.expect(http.StatusRequestEntityTooLarge, "POST", "/v1/notices", big)
		errorOf(t, resp, b)
	})

	t.Run("NoTokenIs401", func(t *testing.T) {
		resp, b := e.do("POST", "/v1/notices", "", `{"url":"http://127.0.0.1:9/hook"}`)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", resp.StatusCode)
		}
		if h := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") {
			t.Errorf("WWW-Authenticate %q, want Bearer", h)
		}
		errorOf(t, resp, b)
	})

	t.Run("WrongTokenIs401", func(t *testing.T) {
		for _, auth := range []string{token + "x", "short", strings.ToUpper(token)} {
			resp, b := e.do("POST", "/v1/notices", auth, `{"url":"http://127.0.0.1:9/hook"}`)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("token %q: status %d, want 401", auth, resp.StatusCode)
			}
			if h := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") {
				t.Errorf("WWW-Authenticate %q, want Bearer", h)
			}
			errorOf(t, resp, b)
		}
		req, _ := http.NewRequest("GET", e.url+"/v1/notices/order-1", nil)
		req.Header.Set("Authorization", "Basic "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("Basic scheme: status %d, want 401", resp.StatusCode)
		}
	})
}

func TestEnqueueSchedules(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	if err := e.q.SetDefaultSchedule(ctx, backoff.Schedule{30 * time.Minute, time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := e.q.PublishPartners(ctx, map[string]string{
		"acme": `{"name":"acme","url_prefix":["http://acme.test/"],"schedule":"2h","signed":false}`,
	}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, body  string
		partner     string
		wantOffsets backoff.Schedule
	}{
		{"DefaultFromServe", `{"id":"d-1","url":"http://other.test/x"}`, "", backoff.Schedule{30 * time.Minute, time.Hour}},
		{"PartnerByPrefix", `{"id":"p-1","url":"http://acme.test/x"}`, "acme", backoff.Schedule{2 * time.Hour}},
		{"PartnerByName", `{"id":"p-2","url":"http://acme.test/y","partner":"acme"}`, "acme", backoff.Schedule{2 * time.Hour}},
		{"OwnScheduleWins", `{"id":"o-1","url":"http://acme.test/x","schedule":"3h"}`, "acme", backoff.Schedule{3 * time.Hour}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.expect(http.StatusCreated, "POST", "/v1/notices", tc.body)
			var id struct{ ID string }
			_ = json.Unmarshal([]byte(tc.body), &id)
			p, err := e.q.Pending(ctx, id.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Notice.Schedule.String(); got != tc.wantOffsets.String() {
				t.Errorf("schedule %s, want %s", got, tc.wantOffsets)
			}
			if p.Notice.Partner != tc.partner {
				t.Errorf("partner %q, want %q", p.Notice.Partner, tc.partner)
			}
		})
	}
	t.Run("NamedPartnerElsewhereIs400", func(t *testing.T) {
		resp, b := e.expect(http.StatusBadRequest, "POST", "/v1/notices", `{"id":"p-3","url":"http://other.test/x","partner":"acme"}`)
		if msg := errorOf(t, resp, b); !strings.Contains(msg, "not under a url_prefix") {
			t.Errorf("error %q, want not under a url_prefix", msg)
		}
		if _, err := e.q.Pending(ctx, "p-3"); !errors.Is(err, notifier.ErrNotFound) {
			t.Errorf("Pending(p-3) = %v, want ErrNotFound: nothing is stored", err)
		}
	})
	t.Run("UnknownPartnerIs400", func(t *testing.T) {
		resp, b := e.expect(http.StatusBadRequest, "POST", "/v1/notices", `{"url":"http://acme.test/x","partner":"nobody"}`)
		if msg := errorOf(t, resp, b); !strings.Contains(msg, "unknown partner") {
			t.Errorf("error %q, want unknown partner", msg)
		}
	})
}

func TestStatusAndCancel(t *testing.T) {
	e := newEnv(t, nil)
	before := time.Now().Truncate(time.Millisecond)
	e.expect(http.StatusCreated, "POST", "/v1/notices", `{"id":"order-7","url":"http://127.0.0.1:9/hook","schedule":"1h,2h"}`)

	t.Run("PendingShowsNextDue", func(t *testing.T) {
		got := e.get("order-7")
		st := got.Status
		if st.State != notifier.StatePending || st.MaxAttempts != 2 || st.NextAttempt != 1 || st.Stamp == nil || st.NextDue == nil {
			t.Fatalf("status %+v, want pending, attempt 1 of 2 with stamp and next_due", st)
		}
		if st.Stamp.Before(before) {
			t.Errorf("stamp %s before the request at %s", st.Stamp, before)
		}
		if want := st.Stamp.Add(time.Hour); !st.NextDue.Equal(want) {
			t.Errorf("next_due %s, want stamp+1h = %s", st.NextDue, want)
		}
		if len(got.Attempts) != 0 {
			t.Errorf("attempts %+v, want none", got.Attempts)
		}
	})

	t.Run("DeleteCancels", func(t *testing.T) {
		if _, b := e.expect(http.StatusNoContent, "DELETE", "/v1/notices/order-7", ""); len(b) != 0 {
			t.Errorf("204 with body %s", b)
		}
		if st := e.get("order-7").Status; st.State != notifier.StateCancelled {
			t.Errorf("state %s after DELETE, want cancelled", st.State)
		}
	})

	t.Run("DeleteAgainIs409", func(t *testing.T) {
		resp, b := e.expect(http.StatusConflict, "DELETE", "/v1/notices/order-7", "")
		errorOf(t, resp, b)
	})

	t.Run("UnknownIs404", func(t *testing.T) {
		resp, b := e.expect(http.StatusNotFound, "GET", "/v1/notices/nobody", "")
		errorOf(t, resp, b)
		resp, b = e.expect(http.StatusNotFound, "DELETE", "/v1/notices/nobody", "")
		errorOf(t, resp, b)
	})

	t.Run("LoggedAttemptsAreListed", func(t *testing.T) {
		e.expect(http.StatusCreated, "POST", "/v1/notices", `{"id":"order-8","url":"http://127.0.0.1:9/hook","schedule":"0,1h"}`)
		p, err := e.q.Pending(context.Background(), "order-8")
		if err != nil {
			t.Fatal(err)
		}
		start := p.Notice.Stamp.Add(5 * time.Millisecond)
		e.record(notifier.Attempt{NoticeID: "order-8", Stamp: p.Notice.Stamp, N: 1, Due: p.Notice.Stamp, Start: start,
			Duration: 20 * time.Millisecond, URL: "http://127.0.0.1:9/hook", Status: 503, Outcome: notifier.Retry,
			Next: p.Notice.Stamp.Add(time.Hour)})
		got := e.get("order-8")
		if len(got.Attempts) != 1 || got.Attempts[0].N != 1 || got.Attempts[0].Status != 503 || got.Attempts[0].Outcome != notifier.Retry {
			t.Fatalf("attempts %+v, want #1 retry 503", got.Attempts)
		}
		if got.Status.Attempts != 1 || got.Status.Last == nil || got.Status.Last.Status != 503 {
			t.Errorf("status %+v, want 1 attempt, last 503", got.Status)
		}
	})
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

func TestRetry(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	old := time.Now().Add(-2 * time.Hour).Truncate(time.Millisecond)
	ended := notifier.Notice{ID: "gone-1", URL: "http://127.0.0.1:9/hook", Body: []byte(`{"n":1}`),
		Schedule: backoff.Schedule{0, time.Hour}, Stamp: old}
	e.record(notifier.Attempt{NoticeID: "gone-1", Stamp: old, N: 2, Due: old.Add(time.Hour), Start: old.Add(time.Hour),
		Duration: time.Second, URL: ended.URL, Status: 500, Outcome: notifier.GaveUp, Ended: &ended})

	t.Run("GaveUpNoticeIsPendingAgain", func(t *testing.T) {
		if st := e.get("gone-1").Status; st.State != notifier.StateGaveUp {
			t.Fatalf("state %s before retry, want gave-up", st.State)
		}
		_, b := e.expect(http.StatusOK, "POST", "/v1/notices/gone-1/retry", "")
		var got struct {
			ID    string
			Stamp time.Time
		}
		if err := json.Unmarshal(b, &got); err != nil || got.ID != "gone-1" {
			t.Fatalf("body %s, want id gone-1", b)
		}
		state, err := e.q.State(ctx, "gone-1")
		if err != nil || state != notifier.StatePending {
			t.Fatalf("Redis state %q (%v), want pending", state, err)
		}
		p, err := e.q.Pending(ctx, "gone-1")
		if err != nil {
			t.Fatal(err)
		}
		if !p.Notice.Stamp.After(old) || !p.Notice.Stamp.Equal(got.Stamp) {
			t.Errorf("stamp %s, want the fresh stamp %s (after %s)", p.Notice.Stamp, got.Stamp, old)
		}
		if string(p.Notice.Body) != `{"n":1}` || p.N != 1 {
			t.Errorf("pending %q attempt %d, want the archived body at attempt 1", p.Notice.Body, p.N)
		}
		if st := e.get("gone-1"); st.Status.State != notifier.StatePending || len(st.Attempts) != 0 {
			t.Errorf("GET after retry: %+v, want pending without the old generation's attempts", st)
		}
	})

	t.Run("PendingIs409", func(t *testing.T) {
		resp, b := e.expect(http.StatusConflict, "POST", "/v1/notices/gone-1/retry", "")
		errorOf(t, resp, b)
		e.expect(http.StatusCreated, "POST", "/v1/notices", `{"id":"never-ended","url":"http://127.0.0.1:9/hook","schedule":"1h"}`)
		resp, b = e.expect(http.StatusConflict, "POST", "/v1/notices/never-ended/retry", "")
		errorOf(t, resp, b)
	})

	t.Run("UnknownIs404", func(t *testing.T) {
		resp, b := e.expect(http.StatusNotFound, "POST", "/v1/notices/nobody/retry", "")
		errorOf(t, resp, b)
	})
}

func TestRoutes(t *testing.T) {
	e := newEnv(t, func(s *api.Server) {
		s.Ready = func(context.Context) error { return errors.New("redis: connection refused") }
	})

	t.Run("HealthzNeedsNoToken", func(t *testing.T) {
		resp, b := e.do("GET", "/healthz", "", "")
		if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(b)) != "ok" {
			t.Errorf("GET /healthz: %d %q, want 200 ok", resp.StatusCode, b)
		}
	})

	t.Run("ReadyzReportsTheReason", func(t *testing.T) {
		resp, b := e.do("GET", "/readyz", "", "")
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want 503", resp.StatusCode)
		}
		if msg := errorOf(t, resp, b); !strings.Contains(msg, "connection refused") {
			t.Errorf("error %q, want the reason", msg)
		}
	})

	t.Run("WrongMethodIsJSON405", func(t *testing.T) {
		resp, b := e.expect(http.StatusMethodNotAllowed, "PUT", "/v1/notices/x", "")
		errorOf(t, resp, b)
		if allow := resp.Header.Get("Allow"); !strings.Contains(allow, "DELETE") {
			t.Errorf("Allow %q, want GET, HEAD, DELETE", allow)
		}
		resp, b = e.expect(http.StatusMethodNotAllowed, "GET", "/v1/notices", "")
		errorOf(t, resp, b)
	})

	t.Run("UnknownRouteIsJSON404", func(t *testing.T) {
		resp, b := e.expect(http.StatusNotFound, "GET", "/v2/things", "")
		errorOf(t, resp, b)
	})

	t.Run("MetricsOffWithoutMetrics", func(t *testing.T) {
		resp, b := e.expect(http.StatusNotFound, "GET", "/metrics", "")
		errorOf(t, resp, b)
	})
}

func TestReadyz(t *testing.T) {
	e := newEnv(t, func(s *api.Server) {
		s.Ready = func(context.Context) error { return nil }
	})
	resp, b := e.do("GET", "/readyz", "", "")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /readyz: %d %s, want 200", resp.StatusCode, b)
	}
}

func TestReadinessCheck(t *testing.T) {
	e := newEnv(t, nil)
	now := time.Now()
	ready := api.Readiness{
		Ping:      func(ctx context.Context) error { return e.rdb.Ping(ctx).Err() },
		LastHeard: func() time.Time { return now.Add(-3 * time.Second) },
		Sync:      e.log.Sync,
		Now:       func() time.Time { return now },
	}
	ctx := context.Background()
	if err := ready.Check(ctx); err != nil {
		t.Errorf("all well: %v, want nil", err)
	}
	silent := ready
	silent.LastHeard = func() time.Time { return now.Add(-20 * time.Second) }
	if err := silent.Check(ctx); err == nil || !strings.Contains(err.Error(), "silent") {
		t.Errorf("silent subscription: %v, want an error", err)
	}
	never := ready
	never.LastHeard = func() time.Time { return time.Time{} }
	if err := never.Check(ctx); err == nil {
		t.Error("never subscribed: nil, want an error")
	}
	down := ready
	down.Ping = func(context.Context) error { return errors.New("connection refused") }
	if err := down.Check(ctx); err == nil || !strings.Contains(err.Error(), "redis") {
		t.Errorf("redis down: %v, want an error naming redis", err)
	}
}

func TestNewRefusesAWeakConfig(t *testing.T) {
	e := newEnv(t, nil)
	for _, s := range []api.Server{
		{Queue: e.q, Log: e.log},
		{Queue: e.q, Log: e.log, Token: "short"},
		{Log: e.log, Token: token},
		{Queue: e.q, Token: token},
	} {
		if _, err := api.New(s); err == nil {
			t.Errorf("New(token %q, queue %v, log %v): nil error", s.Token, s.Queue != nil, s.Log != nil)
		}
	}
}

func TestServeStopsWithItsContext(t *testing.T) {
	e := newEnv(t, nil)
	h, err := api.New(api.Server{Queue: e.q, Log: e.log, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.Serve(ctx, ln, h, nil) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz: %d, want 200", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v, want nil after its context ended", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return within 10s of cancel")
	}
}
