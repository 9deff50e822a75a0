package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestOTLPExport: with an OTLP endpoint set, spans and metrics leave the
// process (OTLP over HTTP here, as to a collector or Jaeger), and the
// Prometheus handler serves the same instruments.
func TestOTLPExport(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got[r.URL.Path] += len(b)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")

	tel, err := Setup(context.Background(), "digestline-test", io.Discard, "error")
	if err != nil {
		t.Fatal(err)
	}
	_, span := tel.TracerProvider.Tracer("test").Start(context.Background(), "push upload")
	span.End()
	counter, _ := tel.MeterProvider.Meter("test").Int64Counter("digestline.test.things")
	counter.Add(context.Background(), 3)
	rec := httptest.NewRecorder()
	tel.Metrics.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if err := tel.Shutdown(context.Background()); err != nil { // flushes both
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got["/v1/traces"] == 0 || got["/v1/metrics"] == 0 {
		t.Fatalf("the collector received %v", got)
	}
	if body := rec.Body.String(); !strings.Contains(body, "\ndigestline_test_things_total{") {
		t.Fatalf("/metrics lacks the counter:\n%s", body)
	}
}
