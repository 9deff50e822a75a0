package main

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/ship"
	"github.com/digestline/digestline/pkg/events"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/opencontainers/go-digest"
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

// BenchmarkLoad publishes 200 build.requested at once — as 200 webhooks
// would — b.N times, and reports how many runs reach promoted per second and
// the p50/p99 latency from build.requested to promoted (the events' own
// times). Every run must be promoted exactly once: a lost or doubled run
// fails the benchmark.
func BenchmarkLoad(b *testing.B) {
	const runs = 200
	s, _ := startStack(b)
	ctx := context.Background()
	srcs := make([]digest.Digest, runs)
	for i := range srcs {
		var err error
		if srcs[i], err = ship.Upload(ctx, s.JetStream, sourceDir(b, fmt.Sprintf("load %d", i))); err != nil {
			b.Fatal(err)
		}
	}
	var latencies []time.Duration
	var elapsed time.Duration
	for b.Loop() {
		// One follower for the whole batch: promoted events, from now on.
		from, err := events.FollowFrom(ctx, s.JetStream)
		if err != nil {
			b.Fatal(err)
		}
		from.FilterSubjects = []string{events.Promoted.Subject()}
		cons, err := s.JetStream.OrderedConsumer(ctx, events.StreamName, from)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		requested := map[string]time.Time{}
		for i, src := range srcs {
			ev, err := s.bus.Start(ctx, events.BuildRequested, uuid.NewString(), "load", events.BuildRequest{
				Source: events.Source{Kind: events.SourceObject, Object: src.String()},
				Target: fmt.Sprintf("%s/load/app%d:1", s.RegistryAddr, i)})
			if err != nil {
				b.Fatal(err)
			}
			requested[events.RunID(ev)] = ev.Time()
		}
		promoted := map[string]int{}
		for len(promoted) < runs {
			msg, err := cons.Next(jetstream.FetchMaxWait(time.Minute))
			if err != nil {
				for id := range requested {
					if promoted[id] == 0 {
						var evs []map[string]any
						s.getJSON(b, "/v1/runs/"+id, &evs)
						b.Logf("run %s stopped after %v", id, names(evs))
						break
					}
				}
				b.Fatalf("%d of %d runs promoted: %v", len(promoted), runs, err)
			}
			ev, _, err := events.Parse(msg.Data())
			if err != nil {
				b.Fatal(err)
			}
			id := events.RunID(ev)
			if _, ours := requested[id]; !ours {
				continue
			}
			if promoted[id]++; promoted[id] > 1 {
				b.Fatalf("run %s promoted twice", id)
			}
			latencies = append(latencies, ev.Time().Sub(requested[id]))
		}
		elapsed += time.Since(start)
	}
	slices.Sort(latencies)
	b.ReportMetric(float64(runs*b.N)/elapsed.Seconds(), "runs/s")
	b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
}
