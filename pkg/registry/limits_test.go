package registry_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/registry/registrytest"
	"go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// TestClientSideLimitsPerRegistry: requests to a registry keep to the
// configured rate, blob uploads to it to the configured number at once,
// and the waits show in the metrics.
func TestClientSideLimitsPerRegistry(t *testing.T) {
	t.Parallel()
	var running, most atomic.Int32
	uploads := func(r *http.Request) (int, http.Header, bool) {
		if registrytest.CarriesBlob(r) {
			n := running.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(20 * time.Millisecond)
			running.Add(-1)
		}
		return 0, nil, false
	}
	host := newRegistry(t, uploads)
	reader := metric.NewManualReader()
	client := newClient(registry.WithRateLimit(50, 1), registry.WithUploadLimit(1), registry.WithJobs(4),
		registry.WithMeterProvider(metric.NewMeterProvider(metric.WithReader(reader))))
	g, l := bigImage(t, "limited", 64<<10)
	start := time.Now()
	res, err := client.Push(context.Background(), mustRef(t, host+"/team/app:1"), g, l, nil)
	if err != nil {
		t.Fatal(err)
	}
	// At 50 requests a second, n requests take at least (n-1)/50 s.
	if took, least := time.Since(start), time.Duration(res.Requests-1)*20*time.Millisecond; took < least-10*time.Millisecond {
		t.Errorf("%d requests in %s, faster than 50/s allows (%s)", res.Requests, took, least)
	}
	if m := most.Load(); m != 1 {
		t.Errorf("%d uploads at once, want at most 1", m)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	throttled := int64(0)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if s, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "digestline.registry.throttled" {
				for _, dp := range s.DataPoints {
					throttled += dp.Value
				}
			}
		}
	}
	if throttled == 0 {
		t.Error("no request counted in digestline.registry.throttled")
	}
}
