// Package tracing sets up OpenTelemetry tracing from the standard OTEL_*
// environment variables: spans exported over OTLP (gRPC or HTTP) by the
// official SDK, off unless an OTLP endpoint is configured. What the spans
// say is package notifier's business (trace.go); this package only decides
// whether they are exported, and where.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// ErrConfig is wrapped by Setup's errors about the OTEL_* variables.
var ErrConfig = errors.New("invalid OpenTelemetry setting")

// Enabled reports whether getenv configures trace export: an OTLP endpoint
// is set (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT),
// and neither OTEL_SDK_DISABLED=true nor OTEL_TRACES_EXPORTER=none turns it
// off.
func Enabled(getenv func(string) string) bool {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") || strings.EqualFold(getenv("OTEL_TRACES_EXPORTER"), "none") {
		return false
	}
	return getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
}

// Setup installs a global TracerProvider that exports over OTLP, and the
// W3C trace-context propagator, when Enabled(os.Getenv); otherwise it
// installs nothing and returns a shutdown that does nothing. The protocol
// is OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL:
// "grpc" or "http/protobuf" (the default); the exporters read the other
// OTEL_EXPORTER_OTLP_* variables (endpoint, headers, TLS, timeout,
// compression) themselves, the SDK the OTEL_BSP_* and OTEL_TRACES_SAMPLER*
// ones. service.name is "notifier" unless OTEL_SERVICE_NAME or
// OTEL_RESOURCE_ATTRIBUTES say otherwise.
//
// shutdown flushes the spans not yet exported and stops the exporter; its
// ctx bounds how long that may take (a collector that is down would
// otherwise hold it for the exporter's retries).
func Setup(ctx context.Context, version string) (shutdown func(context.Context) error, err error) {
	nothing := func(context.Context) error { return nil }
	if !Enabled(os.Getenv) {
		return nothing, nil
	}
	tp, err := NewProvider(ctx, version)
	if err != nil {
		return nothing, err
	}
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	return tp.Shutdown, nil
}

// NewProvider returns a TracerProvider exporting over OTLP as the
// environment says (see Setup), with a batching span processor.
func NewProvider(ctx context.Context, version string) (*sdktrace.TracerProvider, error) {
	proto := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var exp sdktrace.SpanExporter
	var err error
	switch proto {
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("%w: OTEL_EXPORTER_OTLP_PROTOCOL %q: want grpc or http/protobuf", ErrConfig, proto)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: OTLP exporter: %v", ErrConfig, err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "notifier"), attribute.String("service.version", version)),
		resource.WithTelemetrySDK(), resource.WithHost(), resource.WithProcessPID(),
		resource.WithFromEnv()) // last, so OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
	if err != nil && res == nil {
		return nil, fmt.Errorf("%w: resource: %v", ErrConfig, err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}

// Provider is the global TracerProvider, for the dispatcher's attempt
// spans (notifier.AttemptSpans).
func Provider() trace.TracerProvider { return otel.GetTracerProvider() }
