package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/notifier/notifier/notifier"
)

// TestEnqueueJoinsTheCallersTrace: with tracing on, a POST carrying a
// traceparent header makes the enqueue span the caller's span's child, and
// the stored notice carries the enqueue span's context.
func TestEnqueueJoinsTheCallersTrace(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() {
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
		tp.Shutdown(context.Background())
	})

	e := newEnv(t, nil)
	const caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	req, _ := http.NewRequest("POST", e.url+"/v1/notices", strings.NewReader(`{"id":"traced","url":"http://127.0.0.1:9/hook","schedule":"1h"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("traceparent", caller)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST = %d", resp.StatusCode)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 || spans[0].Name != notifier.SpanEnqueue {
		t.Fatalf("spans %+v; want one enqueue span", spans)
	}
	s := spans[0]
	if s.SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || s.Parent.SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("enqueue span in trace %s under %s; want the caller's", s.SpanContext.TraceID(), s.Parent.SpanID())
	}
	p, err := e.q.Pending(context.Background(), "traced")
	if err != nil {
		t.Fatal(err)
	}
	if want := "00-4bf92f3577b34da6a3ce929d0e0e4736-" + s.SpanContext.SpanID().String() + "-01"; p.Notice.Trace != want {
		t.Errorf("stored trace %q, want %q", p.Notice.Trace, want)
	}
}
