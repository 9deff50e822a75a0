package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/ship"
	"github.com/digestline/digestline/pkg/events"
	"golang.org/x/sync/errgroup"
)

// BenchmarkShip measures one whole run of a tiny image through the
// in-process stack: build.requested → build → push → verify → promoted.
func BenchmarkShip(b *testing.B) {
	s, _ := startStack(b)
	dir := sourceDir(b, "bench")
	for b.Loop() {
		if _, out, err := s.ship(b, dir, "bench/app:lab"); err != nil {
			b.Fatalf("ship: %v\n%s", err, out)
		}
	}
}

// BenchmarkLoad starts 200 tiny runs at once, b.N times, and reports how
// many runs finish per second and the p50/p99 latency from build.requested
// to promoted (the events' own times). Every run must end promoted exactly
// once: a lost or doubled run fails the benchmark.
func BenchmarkLoad(b *testing.B) {
	const runs = 200
	s, _ := startStack(b)
	dirs := make([]string, runs)
	for i := range dirs {
		dirs[i] = sourceDir(b, fmt.Sprintf("load %d", i))
	}
	var latencies []time.Duration
	var elapsed time.Duration
	for b.Loop() {
		start := time.Now()
		ids := make([]string, runs)
		g, ctx := errgroup.WithContext(context.Background())
		for i, dir := range dirs {
			g.Go(func() error {
				ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
				defer cancel()
				res, err := ship.Ship(ctx, s.bus, ship.Request{Dir: dir, Target: fmt.Sprintf("%s/load/app%d:1", s.RegistryAddr, i)}, io.Discard)
				ids[i] = res.RunID
				return err
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
		elapsed += time.Since(start)
		b.StopTimer()
		for _, id := range ids {
			latencies = append(latencies, s.runLatency(b, id))
		}
		b.StartTimer()
	}
	slices.Sort(latencies)
	b.ReportMetric(float64(runs*b.N)/elapsed.Seconds(), "runs/s")
	b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
}

// runLatency is the time from a run's build.requested to its promoted, and
// checks that the run was promoted exactly once.
func (s *stack) runLatency(b *testing.B, runID string) time.Duration {
	var evs []map[string]any
	var requested, promoted time.Time
	n := 0
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		evs, n = nil, 0
		if code := s.getJSON(b, "/v1/runs/"+runID, &evs); code != http.StatusOK {
			continue
		}
		for _, ev := range evs {
			at, _ := time.Parse(time.RFC3339Nano, ev["time"].(string))
			switch ev["type"] {
			case events.BuildRequested.Type():
				requested = at
			case events.Promoted.Type():
				promoted, n = at, n+1
			}
		}
		if n > 0 {
			break
		}
	}
	if n != 1 || requested.IsZero() {
		b.Fatalf("run %s: promoted %d times", runID, n)
	}
	return promoted.Sub(requested)
}
