package notifier

import (
	"context"
	"net/url"
	"strconv"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// TracerName is the instrumentation scope of notifier's spans.
const TracerName = "github.com/notifier/notifier"

// Span names: one span per notice enqueued (or sent again), one per attempt.
const (
	SpanEnqueue = "notifier.enqueue"
	SpanResend  = "notifier.resend"
	SpanAttempt = "notifier.attempt"
)

// Span attribute keys. The URL is the notice's without its query string
// or fragment, which may carry tokens.
const (
	AttrNoticeID  = attribute.Key("notifier.notice.id")
	AttrAttempt   = attribute.Key("notifier.attempt")
	AttrPartner   = attribute.Key("notifier.partner")
	AttrOutcome   = attribute.Key("notifier.outcome")
	AttrLatenessS = attribute.Key("notifier.lateness_seconds")
	AttrURL       = attribute.Key("url.full")
	AttrStatus    = attribute.Key("http.response.status_code")
	AttrMethod    = attribute.Key("http.request.method")
)

// traceEnqueue starts one span per notice of ns, children of ctx's span
// if any, and stores each span's context in its notice (Notice.Trace), so
// that the attempts, made later by any serve, join its trace. It uses the
// global TracerProvider: with none set (tracing off) the spans record
// nothing and no notice gets a Trace. end ends the spans with each
// notice's result (errs[i], or err for all when errs is nil).
func traceEnqueue(ctx context.Context, name string, ns []Notice) (end func(errs []error, err error)) {
	tr := otel.GetTracerProvider().Tracer(TracerName)
	kind := trace.WithSpanKind(trace.SpanKindProducer)
	_, first := tr.Start(ctx, name, kind)
	if !first.IsRecording() && !first.SpanContext().IsValid() {
		// No TracerProvider set (tracing off): a span per notice would
		// cost enqueue --file time for nothing.
		for i := range ns {
			ns[i].Trace = ""
		}
		return func([]error, error) {}
	}
	spans := make([]trace.Span, len(ns))
	for i := range ns {
		n := &ns[i]
		span := first
		if i > 0 {
			_, span = tr.Start(ctx, name, kind)
		}
		spans[i] = span
		n.Trace = ""
		if span.IsRecording() { // tracing on: nothing is built for a span that is not
			span.SetAttributes(AttrNoticeID.String(n.ID), AttrPartner.String(n.Partner), AttrURL.String(bareURL(n.URL)))
			n.Trace = traceparent(span.SpanContext())
		}
	}
	return func(errs []error, err error) {
		for i, span := range spans {
			e := err
			if errs != nil {
				e = errs[i]
			}
			if e != nil {
				span.SetStatus(codes.Error, e.Error())
			}
			span.End()
		}
	}
}

// traceparent is sc as a W3C traceparent header value.
func traceparent(sc trace.SpanContext) string {
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(context.Background(), sc), c)
	return c.Get("traceparent")
}

// spanContextOf reads a stored traceparent; the result is invalid when tp
// is empty or does not parse.
func spanContextOf(tp string) trace.SpanContext {
	if tp == "" {
		return trace.SpanContext{}
	}
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": tp})
	return trace.SpanContextFromContext(ctx)
}

// AttemptSpans returns a Dispatcher observer (see AddObserver) that turns
// every attempt into a span of tp, from its start to its end: a child of
// the span that enqueued its notice, when the notice stored one, and
// linked to it, so one trace shows the notice's whole life whichever serve
// made each attempt. A failed attempt's span has status Error.
func AttemptSpans(tp trace.TracerProvider) func(Attempt) {
	tr := tp.Tracer(TracerName)
	return func(a Attempt) {
		ctx := context.Background()
		var opts []trace.SpanStartOption
		if sc := spanContextOf(a.Trace); sc.IsValid() {
			ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc,
				Attributes: []attribute.KeyValue{attribute.String("notifier.link", "enqueue")}}))
		}
		attrs := []attribute.KeyValue{
			AttrNoticeID.String(a.NoticeID), AttrAttempt.Int(a.N), AttrPartner.String(a.Partner),
			AttrURL.String(bareURL(a.URL)), AttrMethod.String("POST"), AttrOutcome.String(string(a.Outcome)),
			AttrLatenessS.Float64(a.Lateness().Seconds()),
		}
		if a.Status != 0 {
			attrs = append(attrs, AttrStatus.Int(a.Status))
		}
		opts = append(opts, trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(a.Start), trace.WithAttributes(attrs...))
		_, span := tr.Start(ctx, SpanAttempt, opts...)
		if a.Outcome != Delivered {
			msg := a.Error
			if msg == "" {
				msg = string(a.Outcome) + ": status " + strconv.Itoa(a.Status)
			}
			span.SetStatus(codes.Error, msg)
		}
		span.End(trace.WithTimestamp(a.Start.Add(a.Duration)))
	}
}

// bareURL is raw without user info, query string or fragment.
func bareURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return RedactURL(raw)
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}
