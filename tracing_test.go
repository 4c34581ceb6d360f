package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notifier/notifier/notifier"
	"github.com/notifier/notifier/notifier/egresstest"
	"github.com/notifier/notifier/store/redistest"
)

// TestTracesAcrossServes: with OTEL_EXPORTER_OTLP_ENDPOINT set, the CLI's
// enqueue exports a span, and each attempt, made by two different serve
// processes, is a span in that span's trace, its child and linked to it,
// carrying the notice id, attempt number, partner, URL without its query,
// status, outcome and lateness. An in-test OTLP/HTTP receiver decodes what
// the official exporter sends.
func TestTracesAcrossServes(t *testing.T) {
	otlp := egresstest.NewOTLP(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.Endpoint)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	srv := redistest.Start(t)
	rdb := srv.Client()
	var calls atomic.Int64
	partner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ok")
	}))
	t.Cleanup(partner.Close)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "notifier.toml")
	writeFile(t, cfg, fmt.Sprintf("[[partner]]\nname = \"shop\"\nurl_prefix = [\"%s/\"]\n", partner.URL))
	db := filepath.Join(dir, "attempts.db")

	first := spawnServe(t, serveArgs(srv.URL(), db, "--config", cfg)...)
	t.Cleanup(first.stop)
	first.waitSubscribed(rdb, 1)
	code, _, errOut := runCLI(t, "", "enqueue", "--redis", srv.URL(), "--url", partner.URL+"/cb?token=s3cret",
		"--id", "traced-1", "--schedule", "0,2s", "-d", `{"paid":true}`)
	if code != 0 {
		t.Fatalf("enqueue = %d %s", code, errOut)
	}
	waitRows(t, db, 1)
	first.stop() // flushes its spans; the second attempt is the next serve's
	second := spawnServe(t, serveArgs(srv.URL(), db, "--config", cfg)...)
	t.Cleanup(second.stop)
	second.waitSubscribed(rdb, 1)
	rows := waitRows(t, db, 2)
	if rows[1].Outcome != notifier.Delivered {
		t.Fatalf("attempts %+v", rows)
	}
	second.stop()

	var enq *egresstest.Span
	attempts := map[string]egresstest.Span{}
	deadline := time.Now().Add(15 * time.Second)
	for {
		enq, attempts = nil, map[string]egresstest.Span{}
		for _, s := range otlp.Spans() {
			switch s.Name {
			case notifier.SpanEnqueue:
				enq = &s
			case notifier.SpanAttempt:
				attempts[s.Attrs[string(notifier.AttrAttempt)]] = s
			}
		}
		if enq != nil && len(attempts) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("receiver got enqueue %v and %d attempt spans within 15 s; want 1 and 2: %+v", enq != nil, len(attempts), otlp.Spans())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if enq.Service != "notifier" || enq.Attrs[string(notifier.AttrNoticeID)] != "traced-1" || enq.Attrs[string(notifier.AttrPartner)] != "shop" {
		t.Errorf("enqueue span %+v", *enq)
	}
	for n, want := range map[string]struct{ status, outcome string }{"1": {"503", "retry"}, "2": {"200", "delivered"}} {
		s := attempts[n]
		if s.TraceID != enq.TraceID || s.ParentID != enq.SpanID {
			t.Errorf("attempt %s: trace %s parent %s; want the enqueue span's trace %s and it as parent", n, s.TraceID, s.ParentID, enq.TraceID)
		}
		if len(s.Links) != 1 || s.Links[0] != (egresstest.Link{TraceID: enq.TraceID, SpanID: enq.SpanID}) {
			t.Errorf("attempt %s links %+v; want one to the enqueue span", n, s.Links)
		}
		a := s.Attrs
		if a[string(notifier.AttrNoticeID)] != "traced-1" || a[string(notifier.AttrPartner)] != "shop" ||
			a[string(notifier.AttrStatus)] != want.status || a[string(notifier.AttrOutcome)] != want.outcome ||
			a[string(notifier.AttrURL)] != partner.URL+"/cb" || a[string(notifier.AttrLatenessS)] == "" {
			t.Errorf("attempt %s attributes %v", n, a)
		}
		if wantErr := want.outcome != "delivered"; (s.Status == 2) != wantErr {
			t.Errorf("attempt %s status code %d; want error=%v", n, s.Status, wantErr)
		}
		if s.EndNS < s.StartNS {
			t.Errorf("attempt %s ends before it starts", n)
		}
	}
	for _, s := range otlp.Spans() {
		for _, v := range s.Attrs {
			if strings.Contains(v, "s3cret") {
				t.Errorf("span %s carries the URL's query: %v", s.Name, s.Attrs)
			}
		}
	}
}
