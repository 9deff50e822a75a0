package main

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/digestline/digestline/cmd/digestline/internal/dev"
	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/telemetry"
	"github.com/google/go-containerregistry/pkg/authn"
	"go.opentelemetry.io/otel/sdk/resource"
)

// TestHealthAndMetrics: after a run, the API's /readyz says NATS and the
// registry answer and /metrics counts what the run did.
func TestHealthAndMetrics(t *testing.T) {
	mp, metrics, err := telemetry.NewMetrics(resource.Empty())
	if err != nil {
		t.Fatal(err)
	}
	s, _ := e2etest.StartStack(t, func(c *dev.Config) {
		c.MeterProvider, c.Metrics = mp, metrics
		c.Registry = registry.New(registry.WithKeychain(authn.NewMultiKeychain()), registry.WithMeterProvider(mp))
	})
	if _, out, err := s.Ship(t, e2etest.SourceDir(t, "metrics"), "team/metrics:1"); err != nil {
		t.Fatalf("ship: %v\n%s", err, out)
	}
	get := func(path string) (int, string) {
		resp, err := http.Get(s.APIURL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	if code, body := get("/readyz"); code != http.StatusOK || !strings.Contains(body, "ready") {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	code, body := get("/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`digestline_events_handled_total{consumer="pusher",`, `outcome="ack"`,
		`digestline_push_stage_duration_seconds_bucket{`, `stage="upload"`,
		`digestline_push_bytes`, `digestline_verify_bytes`, `digestline_dlq_depth`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Log(body)
	}
}

// TestAStackStoppedAsItStartsEndsWithoutAnError: digestline dev stopped
// while its services still wait for their buckets ends as one stopped
// later does, without an error (the reporter's wait used to end it with
// "context canceled").
func TestAStackStoppedAsItStartsEndsWithoutAnError(t *testing.T) {
	for range 5 {
		_, stop := e2etest.StartStack(t)
		stop() // fails the test when the stack ends with an error
	}
}
