package notifier_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/notifier/notifier/notifier"
)

// withTracing installs an SDK TracerProvider recording into memory as the
// global one for the test.
func withTracing(t *testing.T) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev); tp.Shutdown(context.Background()) })
	return tp, exp
}

func TestEnqueueStoresNoTraceWithoutTracing(t *testing.T) {
	f := &fakeIntakeStore{}
	in := newIntake(t, f)
	ns := []notifier.Notice{{ID: "a", URL: "https://pay.example.com/cb"}}
	if _, err := in.Enqueue(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	if len(f.enqueued) != 1 || f.enqueued[0].Trace != "" {
		t.Fatalf("enqueued %+v; want no trace context", f.enqueued)
	}
}

func TestEnqueueAndAttemptSpans(t *testing.T) {
	tp, exp := withTracing(t)
	f := &fakeIntakeStore{pending: map[string]bool{"dup": true}}
	in := newIntake(t, f)
	// The caller's span (an API request's traceparent, say) is the parent.
	ctx, caller := tp.Tracer("caller").Start(context.Background(), "caller")
	ns := []notifier.Notice{{ID: "a", URL: "https://pay.example.com/cb?token=x"}, {ID: "dup", URL: "https://pay.example.com/cb"}}
	if _, err := in.Enqueue(ctx, ns); err != nil {
		t.Fatal(err)
	}
	caller.End()
	if len(f.enqueued) != 1 || f.enqueued[0].Trace == "" {
		t.Fatalf("enqueued %+v; want a trace context", f.enqueued)
	}
	var enq, dup tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Name != notifier.SpanEnqueue {
			continue
		}
		for _, a := range s.Attributes {
			if a.Key == notifier.AttrNoticeID && a.Value.AsString() == "a" {
				enq = s
			} else if a.Key == notifier.AttrNoticeID {
				dup = s
			}
		}
	}
	if enq.Parent.SpanID() != caller.SpanContext().SpanID() || enq.SpanContext.TraceID() != caller.SpanContext().TraceID() {
		t.Errorf("enqueue span is not the caller's child")
	}
	if dup.Status.Code != codes.Error || enq.Status.Code == codes.Error {
		t.Errorf("statuses: stored %v, duplicate %v; want the duplicate's an error", enq.Status, dup.Status)
	}
	if want := "00-" + enq.SpanContext.TraceID().String() + "-" + enq.SpanContext.SpanID().String() + "-01"; f.enqueued[0].Trace != want {
		t.Errorf("stored trace %q, want %q", f.enqueued[0].Trace, want)
	}

	exp.Reset()
	start := time.Date(2026, 3, 1, 12, 0, 1, 0, time.UTC)
	observe := notifier.AttemptSpans(tp)
	observe(notifier.Attempt{NoticeID: "a", N: 2, Due: start.Add(-30 * time.Millisecond), Start: start, Duration: 40 * time.Millisecond,
		URL: "https://pay.example.com/cb?redacted", Status: 503, Outcome: notifier.Retry, Partner: "pay", Trace: f.enqueued[0].Trace})
	observe(notifier.Attempt{NoticeID: "b", N: 1, Start: start, Due: start, Outcome: notifier.Delivered, Status: 200, Trace: "garbage"})
	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	s := spans[0]
	if s.Parent.SpanID() != enq.SpanContext.SpanID() || s.SpanContext.TraceID() != enq.SpanContext.TraceID() ||
		len(s.Links) != 1 || s.Links[0].SpanContext.SpanID() != enq.SpanContext.SpanID() {
		t.Errorf("attempt span not the enqueue span's child and linked to it: parent %v links %v", s.Parent, s.Links)
	}
	if !s.StartTime.Equal(start) || s.EndTime.Sub(s.StartTime) != 40*time.Millisecond || s.SpanKind != trace.SpanKindClient ||
		s.Status.Code != codes.Error {
		t.Errorf("attempt span %v..%v kind %v status %v", s.StartTime, s.EndTime, s.SpanKind, s.Status)
	}
	want := map[string]string{"notifier.notice.id": "a", "notifier.attempt": "2", "notifier.partner": "pay",
		"url.full": "https://pay.example.com/cb", "http.response.status_code": "503", "notifier.outcome": "retry",
		"notifier.lateness_seconds": "0.03"}
	got := map[string]string{}
	for _, a := range s.Attributes {
		got[string(a.Key)] = a.Value.Emit()
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("attribute %s = %q, want %q", k, got[k], v)
		}
	}
	if b := spans[1]; b.Parent.IsValid() || len(b.Links) != 0 || b.Status.Code == codes.Error {
		t.Errorf("span of a notice with an unreadable trace context: parent %v links %v status %v; want a root, unlinked, ok",
			b.Parent, b.Links, b.Status)
	}
}
