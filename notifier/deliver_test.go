package notifier

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notifier/notifier/backoff"
)

// postClock is the fixed clock of the Deliverers under test.
var postClock = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// newPostDeliverer returns a Deliverer with the given timeout whose clock
// always reads postClock.
func newPostDeliverer(t *testing.T, timeout time.Duration) *Deliverer {
	t.Helper()
	d := NewDeliverer(timeout, 4)
	d.Now = func() time.Time { return postClock }
	return d
}

// newPartner starts an httptest server running h and closes it when the test
// ends. Handlers that block should also wait on the returned channel, which
// is closed before the server is.
func newPartner(t *testing.T, h http.HandlerFunc) (srv *httptest.Server, release <-chan struct{}) {
	t.Helper()
	srv = httptest.NewServer(h)
	t.Cleanup(srv.Close)
	ch := make(chan struct{})
	t.Cleanup(func() { close(ch) }) // runs before srv.Close
	return srv, ch
}

// postNotice is a valid notice for url.
func postNotice(url string) *Notice {
	return &Notice{
		ID:       "n_post-1",
		URL:      url,
		Body:     []byte(`{"event":"paid"}`),
		Schedule: backoff.Schedule{0},
		Stamp:    time.Date(2025, 3, 1, 11, 59, 30, 123_000_000, time.UTC),
	}
}

// seenRequest is what a partner received.
type seenRequest struct {
	method string
	header http.Header
	body   []byte
}

func TestDelivererPostHeaders(t *testing.T) {
	tests := []struct {
		name            string
		header          http.Header
		wantContentType string
	}{
		{
			name:            "ContentTypeDefaultsToJSON",
			header:          http.Header{"X-Trace": {"t1"}},
			wantContentType: "application/json",
		},
		{
			name:            "NoticeContentTypeWins",
			header:          http.Header{"Content-Type": {"text/plain"}, "X-Trace": {"t1"}},
			wantContentType: "text/plain",
		},
		{
			name:            "NonCanonicalNoticeContentTypeWins",
			header:          http.Header{"content-type": {"text/plain"}, "X-Trace": {"t1"}},
			wantContentType: "text/plain",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := make(chan seenRequest, 1)
			srv, _ := newPartner(t, func(w http.ResponseWriter, r *http.Request) {
				body, err := io.ReadAll(r.Body)
				if err != nil {
					t.Errorf("partner: read body: %v", err)
				}
				seen <- seenRequest{method: r.Method, header: r.Header.Clone(), body: body}
				w.WriteHeader(http.StatusNoContent)
			})
			d := newPostDeliverer(t, 5*time.Second)
			n := postNotice(srv.URL + "/hook")
			n.Header = tt.header
			n.Body = []byte("{\"a\": 1,\n \"b\": \"\\u00e9\"}\x00\xff") // exact bytes, not re-encoded

			res := d.Post(context.Background(), n, 3)
			if res.Err != nil {
				t.Fatalf("Post: %v", res.Err)
			}
			if res.Status != http.StatusNoContent {
				t.Fatalf("Status = %d, want %d", res.Status, http.StatusNoContent)
			}
			got := <-seen

			if got.method != http.MethodPost {
				t.Errorf("method = %q, want POST", got.method)
			}
			if !bytes.Equal(got.body, n.Body) {
				t.Errorf("body = %q, want %q", got.body, n.Body)
			}
			want := map[string]string{
				"Webhook-Id":        "n_post-1",
				"Webhook-Timestamp": strconv.FormatInt(postClock.Unix(), 10),
				"Notice-Attempt":    "3",
				"Notice-Stamp":      "1740830370123",
				"Content-Type":      tt.wantContentType,
				"X-Trace":           "t1",
			}
			for k, v := range want {
				if vs := got.header.Values(k); len(vs) != 1 || vs[0] != v {
					t.Errorf("header %s = %q, want [%q]", k, vs, v)
				}
			}
		})
	}

	t.Run("AllValuesOfAMultiValuedHeaderAreSent", func(t *testing.T) {
		seen := make(chan seenRequest, 1)
		srv, _ := newPartner(t, func(w http.ResponseWriter, r *http.Request) {
			seen <- seenRequest{header: r.Header.Clone()}
		})
		n := postNotice(srv.URL)
		n.Header = http.Header{"X-Tag": {"a", "b"}}
		if res := newPostDeliverer(t, 5*time.Second).Post(context.Background(), n, 1); res.Err != nil {
			t.Fatalf("Post: %v", res.Err)
		}
		if got := (<-seen).header.Values("X-Tag"); len(got) != 2 || got[0] != "a" || got[1] != "b" {
			t.Errorf("X-Tag = %q, want [a b]", got)
		}
	})

	t.Run("StartIsReadFromTheClock", func(t *testing.T) {
		srv, _ := newPartner(t, func(http.ResponseWriter, *http.Request) {})
		res := newPostDeliverer(t, 5*time.Second).Post(context.Background(), postNotice(srv.URL), 1)
		if !res.Start.Equal(postClock) {
			t.Errorf("Start = %v, want %v", res.Start, postClock)
		}
	})
}

func TestDelivererPostStatusAndSnippet(t *testing.T) {
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = 'a' + byte(i%26)
	}
	tests := []struct {
		name        string
		status      int
		reply       []byte
		wantSnippet []byte
	}{
		{"OKReplyIsKeptWhole", http.StatusOK, []byte(`{"ok":true}`), []byte(`{"ok":true}`)},
		{"ErrorStatusIsAResponseNotAnError", http.StatusInternalServerError, []byte("boom"), []byte("boom")},
		{"EmptyReplyGivesEmptySnippet", http.StatusAccepted, nil, nil},
		{"ReplyOfOneMiBIsCutToMaxSnippet", http.StatusOK, big, big[:MaxSnippet]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := newPartner(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				_, _ = w.Write(tt.reply) // the client may hang up on a large reply
			})
			res := newPostDeliverer(t, 5*time.Second).Post(context.Background(), postNotice(srv.URL), 1)
			if res.Err != nil {
				t.Fatalf("Err = %v, want nil", res.Err)
			}
			if res.Status != tt.status {
				t.Errorf("Status = %d, want %d", res.Status, tt.status)
			}
			if len(res.Snippet) != len(tt.wantSnippet) || !bytes.Equal(res.Snippet, tt.wantSnippet) {
				t.Errorf("Snippet is %d bytes (%.20q…), want %d bytes (%.20q…)",
					len(res.Snippet), res.Snippet, len(tt.wantSnippet), tt.wantSnippet)
			}
		})
	}
}

func TestPostStatusRules(t *testing.T) {
	tests := []struct {
		status                       int
		wantSucceeded, wantPermanent bool
	}{
		{199, false, false},
		{200, true, false},
		{204, true, false},
		{299, true, false},
		{300, false, false},
		{302, false, false},
		{404, false, false},
		{410, false, true},
		{429, false, false},
		{500, false, false},
		{0, false, false},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			if got := Succeeded(tt.status); got != tt.wantSucceeded {
				t.Errorf("Succeeded(%d) = %v, want %v", tt.status, got, tt.wantSucceeded)
			}
			if got := Permanent(tt.status); got != tt.wantPermanent {
				t.Errorf("Permanent(%d) = %v, want %v", tt.status, got, tt.wantPermanent)
			}
		})
	}
}

func TestDelivererPostDoesNotFollowRedirects(t *testing.T) {
	tests := []struct {
		name   string
		status int
	}{
		{"Found", http.StatusFound},
		{"SeeOther", http.StatusSeeOther},
		{"TemporaryRedirect", http.StatusTemporaryRedirect},
		{"PermanentRedirect", http.StatusPermanentRedirect},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var followed atomic.Int32
			mux := http.NewServeMux()
			mux.HandleFunc("/start", func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "/elsewhere", tt.status)
			})
			mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) {
				followed.Add(1)
			})
			srv, _ := newPartner(t, mux.ServeHTTP)

			res := newPostDeliverer(t, 5*time.Second).Post(context.Background(), postNotice(srv.URL+"/start"), 1)
			if res.Err != nil {
				t.Fatalf("Err = %v, want nil", res.Err)
			}
			if res.Status != tt.status {
				t.Errorf("Status = %d, want %d", res.Status, tt.status)
			}
			if n := followed.Load(); n != 0 {
				t.Errorf("redirect target was hit %d times, want 0", n)
			}
		})
	}
}

func TestDelivererPostTimesOut(t *testing.T) {
	tests := []struct {
		name       string
		handler    func(release <-chan struct{}) http.HandlerFunc
		wantStatus int
	}{
		{
			name: "PartnerNeverAnswers",
			handler: func(release <-chan struct{}) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					select {
					case <-r.Context().Done():
					case <-release:
					}
				}
			},
			wantStatus: 0,
		},
		{
			name: "PartnerDripsTheReply",
			handler: func(release <-chan struct{}) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					w.WriteHeader(http.StatusOK)
					_, _ = w.Write([]byte("{"))
					http.NewResponseController(w).Flush()
					select {
					case <-r.Context().Done():
					case <-release:
					}
				}
			},
			wantStatus: http.StatusOK, // headers came; the body did not
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			srv := httptest.NewServer(tt.handler(release))
			t.Cleanup(srv.Close)
			t.Cleanup(func() { close(release) }) // runs before srv.Close

			d := newPostDeliverer(t, 100*time.Millisecond)
			begin := time.Now()
			res := d.Post(context.Background(), postNotice(srv.URL), 1)
			if took := time.Since(begin); took > 2*time.Second {
				t.Errorf("Post took %s with a 100ms timeout", took)
			}
			if !errors.Is(res.Err, ErrTimeout) {
				t.Errorf("Err = %v, want one wrapping ErrTimeout", res.Err)
			}
			if res.Status != tt.wantStatus {
				t.Errorf("Status = %d, want %d", res.Status, tt.wantStatus)
			}
		})
	}
}

func TestDelivererPostErrorsHideTheURL(t *testing.T) {
	tests := []struct {
		name string
		url  string
	}{
		{"ConnectionRefused", "http://127.0.0.1:1/x?token=SECRET"},
		{"UnknownScheme", "gopher://127.0.0.1:1/x?token=SECRET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := newPostDeliverer(t, 5*time.Second).Post(context.Background(), postNotice(tt.url), 1)
			if res.Status != 0 {
				t.Errorf("Status = %d, want 0", res.Status)
			}
			if res.Err == nil {
				t.Fatal("Err = nil, want an error")
			}
			for _, secret := range []string{"SECRET", "token"} {
				if strings.Contains(res.Err.Error(), secret) {
					t.Errorf("Err = %q, must not contain %q", res.Err, secret)
				}
			}
		})
	}
}

// countingPartner starts a partner that answers 200 "ok" and counts the
// connections it accepts.
func countingPartner(t *testing.T) (srv *httptest.Server, conns *atomic.Int32) {
	t.Helper()
	conns = new(atomic.Int32)
	srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte("ok"))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, conns
}

func TestDelivererPostReusesConnections(t *testing.T) {
	t.Run("SequentialPostsShareOneConnection", func(t *testing.T) {
		srv, conns := countingPartner(t)
		d := newPostDeliverer(t, 5*time.Second)
		for i := 1; i <= 20; i++ {
			if res := d.Post(context.Background(), postNotice(srv.URL), i); res.Err != nil || res.Status != http.StatusOK {
				t.Fatalf("Post %d: status %d, err %v", i, res.Status, res.Err)
			}
		}
		if got := conns.Load(); got != 1 {
			t.Errorf("20 sequential posts opened %d connections, want 1", got)
		}
	})

	t.Run("FailedPostElsewhereKeepsIdleConnections", func(t *testing.T) {
		srv, conns := countingPartner(t)
		d := newPostDeliverer(t, 5*time.Second)
		if res := d.Post(context.Background(), postNotice(srv.URL), 1); res.Err != nil {
			t.Fatalf("first Post: %v", res.Err)
		}
		if res := d.Post(context.Background(), postNotice("http://127.0.0.1:1/refused"), 1); res.Err == nil {
			t.Fatal("Post to a refused address: Err = nil, want an error")
		}
		if res := d.Post(context.Background(), postNotice(srv.URL), 2); res.Err != nil {
			t.Fatalf("Post after the failure: %v", res.Err)
		}
		if got := conns.Load(); got != 1 {
			t.Errorf("partner saw %d connections, want 1: a failure elsewhere closed the idle connection", got)
		}
	})
}

// TestDelivererPostSurvivesAClosedKeptAliveConnection: a partner that
// closes a kept-alive connection as the next POST arrives on it, without
// replying, does not cost the notice its attempt: net/http sends it again
// on a new connection, and no Idempotency-Key header goes on the wire.
func TestDelivererPostSurvivesAClosedKeptAliveConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var requests atomic.Int32
	var sawKey atomic.Bool
	go func() {
		for conn := 1; ; conn++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn, conn int) {
				defer c.Close()
				br := bufio.NewReader(c)
				for served := 0; ; served++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					requests.Add(1)
					if _, ok := req.Header["Idempotency-Key"]; ok {
						sawKey.Store(true)
					}
					if conn == 1 && served == 1 {
						return // the second request on the first connection: closed unanswered
					}
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
				}
			}(c, conn)
		}
	}()
	d := newPostDeliverer(t, 5*time.Second)
	url := "http://" + ln.Addr().String() + "/notify"
	for n := 1; n <= 2; n++ {
		if res := d.Post(context.Background(), postNotice(url), n); res.Err != nil || res.Status != http.StatusOK {
			t.Fatalf("Post %d: status %d, err %v", n, res.Status, res.Err)
		}
	}
	if got := requests.Load(); got != 3 {
		t.Errorf("partner read %d requests, want 3 (the second sent again on a new connection)", got)
	}
	if sawKey.Load() {
		t.Error("an Idempotency-Key header went on the wire")
	}
}

// TestValidHeadersAreSendable: Validate accepts a header name or value
// exactly when net/http sends it, byte by byte, so no notice is enqueued
// that fails every attempt with "invalid header field".
func TestValidHeadersAreSendable(t *testing.T) {
	srv, _ := newPartner(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	d := newPostDeliverer(t, 5*time.Second)
	check := func(t *testing.T, h http.Header) {
		t.Helper()
		n := postNotice(srv.URL)
		n.Header = h
		verr := n.Validate()
		res := d.Post(context.Background(), n, 1)
		if (verr == nil) != (res.Err == nil) {
			t.Errorf("header %q: Validate() = %v but Post error = %v; want both nil or both errors", h, verr, res.Err)
		}
	}
	for c := range 256 {
		b := string([]byte{byte(c)})
		t.Run("Value"+strconv.Itoa(c), func(t *testing.T) { check(t, http.Header{"X-A": {"a" + b + "b"}}) })
		t.Run("Name"+strconv.Itoa(c), func(t *testing.T) { check(t, http.Header{"X-" + b: {"v"}}) })
	}
}

// TestDelivererPostEmptyBody: a notice without a body is sent with
// "Content-Length: 0", never chunked, and without a Content-Type unless the
// notice sets one (some partners fail on a chunked empty JSON body).
func TestDelivererPostEmptyBody(t *testing.T) {
	tests := []struct {
		name            string
		body            []byte
		header          http.Header
		wantContentType string
	}{
		{"NilBody", nil, nil, ""},
		{"EmptyBody", []byte{}, nil, ""},
		{"NoticeContentTypeKept", nil, http.Header{"Content-Type": {"text/plain"}}, "text/plain"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/Server", func(t *testing.T) {
			type seen struct {
				contentLength    int64
				transferEncoding []string
				header           http.Header
				body             []byte
			}
			got := make(chan seen, 1)
			srv, _ := newPartner(t, func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				got <- seen{r.ContentLength, r.TransferEncoding, r.Header.Clone(), b}
				w.WriteHeader(http.StatusNoContent)
			})
			n := postNotice(srv.URL)
			n.Body, n.Header = tt.body, tt.header
			if res := newPostDeliverer(t, 5*time.Second).Post(context.Background(), n, 1); res.Err != nil || res.Status != http.StatusNoContent {
				t.Fatalf("Post = %d, %v; want 204", res.Status, res.Err)
			}
			s := <-got
			if s.contentLength != 0 || len(s.transferEncoding) != 0 || len(s.body) != 0 {
				t.Errorf("ContentLength %d, TransferEncoding %q, body %q; want 0, none, empty", s.contentLength, s.transferEncoding, s.body)
			}
			if ct := s.header.Get("Content-Type"); ct != tt.wantContentType {
				t.Errorf("Content-Type %q, want %q", ct, tt.wantContentType)
			}
		})
		t.Run(tt.name+"/Wire", func(t *testing.T) {
			head := newWirePartner(t)
			n := postNotice(head.url)
			n.Body, n.Header = tt.body, tt.header
			if res := newPostDeliverer(t, 5*time.Second).Post(context.Background(), n, 1); res.Err != nil || res.Status != http.StatusNoContent {
				t.Fatalf("Post = %d, %v; want 204", res.Status, res.Err)
			}
			req := <-head.requests
			if !strings.Contains(req, "\r\nContent-Length: 0\r\n") || strings.Contains(strings.ToLower(req), "transfer-encoding") {
				t.Errorf("request head %q: want Content-Length: 0 and no Transfer-Encoding", req)
			}
		})
	}
}

// wirePartner is a partner on a bare TCP listener: it records each request's
// head as sent on the wire and answers 204.
type wirePartner struct {
	url      string
	requests chan string
}

func newWirePartner(t *testing.T) *wirePartner {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &wirePartner{url: "http://" + ln.Addr().String() + "/hook", requests: make(chan string, 8)}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				var head []byte
				buf := make([]byte, 4096)
				for !bytes.Contains(head, []byte("\r\n\r\n")) {
					n, err := conn.Read(buf)
					if err != nil {
						return
					}
					head = append(head, buf[:n]...)
				}
				p.requests <- string(head)
				io.WriteString(conn, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
			}()
		}
	}()
	return p
}
