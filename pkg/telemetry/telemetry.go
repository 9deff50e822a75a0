package telemetry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Telemetry is a process's tracer provider, meter provider and logger.
type Telemetry struct {
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	Logger         *slog.Logger
	// Metrics serves the process's metrics in the Prometheus text format.
	Metrics  http.Handler
	shutdown func(context.Context) error
}

// Shutdown flushes pending spans.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t.shutdown == nil {
		return nil
	}
	return t.shutdown(ctx)
}

// Close flushes and stops the providers on a context of its own, bounded
// by 5 s: at a process's end the caller's context is cancelled (Ctrl-C,
// SIGTERM), and the last spans and metrics still go out.
func (t *Telemetry) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = t.Shutdown(ctx)
}

// Setup builds the tracer provider and logger for service. Spans are exported
// over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT (or the traces-specific variable)
// is set — gRPC by default, HTTP when OTEL_EXPORTER_OTLP_PROTOCOL is
// http/protobuf — and otherwise only propagated. Logs are slog text on w at
// level (debug, info, warn, error).
func Setup(ctx context.Context, service string, w io.Writer, level string) (*Telemetry, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(cmp.Or(level, "info"))); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	logger := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl})).With("service", service)

	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", service)))
	if err != nil {
		return nil, fmt.Errorf("otel resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
		exp, err := newExporter(ctx)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	var readers []sdkmetric.Reader
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") != "" {
		exp, err := newMetricExporter(ctx)
		if err != nil {
			return nil, err
		}
		readers = append(readers, sdkmetric.NewPeriodicReader(exp))
	}
	mp, metrics, err := NewMetrics(res, readers...)
	if err != nil {
		return nil, err
	}
	// The global propagator and providers serve libraries that read them;
	// our own code is handed tp and mp explicitly.
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)
	return &Telemetry{TracerProvider: tp, MeterProvider: mp, Logger: logger, Metrics: metrics,
		shutdown: func(ctx context.Context) error { return errors.Join(tp.Shutdown(ctx), mp.Shutdown(ctx)) }}, nil
}

// NewMetrics returns a meter provider whose instruments are served, with
// the Go runtime's, by the returned handler in the Prometheus text format,
// and also read by readers (an OTLP exporter's).
func NewMetrics(res *resource.Resource, readers ...sdkmetric.Reader) (*sdkmetric.MeterProvider, http.Handler, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	opts := []sdkmetric.Option{sdkmetric.WithReader(exp), sdkmetric.WithResource(res)}
	for _, r := range readers {
		opts = append(opts, sdkmetric.WithReader(r))
	}
	mp := sdkmetric.NewMeterProvider(opts...)
	return mp, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), nil
}

func newExporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	return otlpExporter("TRACES",
		func() (sdktrace.SpanExporter, error) { return otlptracegrpc.New(ctx) },
		func() (sdktrace.SpanExporter, error) { return otlptracehttp.New(ctx) })
}

func newMetricExporter(ctx context.Context) (sdkmetric.Exporter, error) {
	return otlpExporter("METRICS",
		func() (sdkmetric.Exporter, error) { return otlpmetricgrpc.New(ctx) },
		func() (sdkmetric.Exporter, error) { return otlpmetrichttp.New(ctx) })
}

// otlpExporter makes the exporter of one signal (TRACES, METRICS) over the
// protocol OTEL_EXPORTER_OTLP_<signal>_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL
// names: gRPC by default, HTTP for http/protobuf.
func otlpExporter[E any](signal string, overGRPC, overHTTP func() (E, error)) (E, error) {
	proto := cmp.Or(os.Getenv("OTEL_EXPORTER_OTLP_"+signal+"_PROTOCOL"), os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), "grpc")
	var (
		exp E
		err error
	)
	switch {
	case proto == "grpc":
		exp, err = overGRPC()
	case strings.HasPrefix(proto, "http"):
		exp, err = overHTTP()
	default:
		err = errors.New("want grpc or http/protobuf")
	}
	if err != nil {
		return exp, fmt.Errorf("OTLP %s exporter (protocol %q): %w", strings.ToLower(signal), proto, err)
	}
	return exp, nil
}
