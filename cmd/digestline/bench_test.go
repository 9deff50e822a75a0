package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/ship"
	"github.com/digestline/digestline/pkg/events"
	"github.com/google/uuid"
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

// BenchmarkLoad sends 200 build.requested b.N times and reports how many
// runs reach promoted per second and the p50/p99 latency from
// build.requested to promoted (the events' own times). Every run must be
// promoted exactly once: a lost or doubled run fails the benchmark.
//
//   - burst: all 200 at once, as 200 webhooks arriving together: the
//     throughput of one `digestline dev`, where latency is mostly queueing.
//   - paced: 200 at a steady 50 per second, as a busy CI sends them: the
//     latency a run sees while the pipeline sustains that rate.
func BenchmarkLoad(b *testing.B) {
	b.Run("burst", func(b *testing.B) { benchLoad(b, 0) })
	b.Run("paced", func(b *testing.B) { benchLoad(b, 50) })
}

// benchLoad sends 200 runs at perSecond (0: all at once).
func benchLoad(b *testing.B, perSecond int) {
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
		from.FilterSubjects = []string{events.Promoted.Filter()}
		cons, err := s.JetStream.OrderedConsumer(ctx, events.StreamName, from)
		if err != nil {
			b.Fatal(err)
		}
		// One pull subscription for all of them (each Next of an ordered
		// consumer would make a new consumer on the server).
		iter, err := cons.Messages()
		if err != nil {
			b.Fatal(err)
		}
		giveUp := time.AfterFunc(2*time.Minute, iter.Stop) // then Next fails, and says how many came
		start := time.Now()
		var mu sync.Mutex
		requested := map[string]time.Time{}
		sent := make(chan error, 1)
		go func() { // the senders: the run's owner waits for it below
			var tick <-chan time.Time
			if perSecond > 0 {
				t := time.NewTicker(time.Second / time.Duration(perSecond))
				defer t.Stop()
				tick = t.C
			}
			for i, src := range srcs {
				if tick != nil && i > 0 {
					<-tick
				}
				ev, err := events.NewEvent(s.bus.Source(), events.BuildRequested, uuid.NewString(), "load", events.BuildRequest{
					Source: events.Source{Kind: events.SourceObject, Object: src.String()},
					Target: fmt.Sprintf("%s/load/app%d:1", s.RegistryAddr, i)})
				if err == nil {
					mu.Lock() // before it is sent: its promoted event may come first
					requested[events.RunID(ev)] = ev.Time()
					mu.Unlock()
					err = s.bus.Publish(ctx, ev)
				}
				if err != nil {
					sent <- err
					return
				}
			}
			sent <- nil
		}()
		promoted := map[string]int{}
		for len(promoted) < runs {
			msg, err := iter.Next()
			if err != nil {
				b.Fatalf("%d of %d runs promoted: %v", len(promoted), runs, err)
			}
			ev, _, err := events.Parse(msg.Data())
			if err != nil {
				b.Fatal(err)
			}
			id := events.RunID(ev)
			mu.Lock()
			at, ours := requested[id]
			mu.Unlock()
			if !ours {
				continue
			}
			if promoted[id]++; promoted[id] > 1 {
				b.Fatalf("run %s promoted twice", id)
			}
			latencies = append(latencies, ev.Time().Sub(at))
		}
		elapsed += time.Since(start)
		giveUp.Stop()
		iter.Stop()
		if err := <-sent; err != nil {
			b.Fatal(err)
		}
	}
	slices.Sort(latencies)
	b.ReportMetric(float64(runs*b.N)/elapsed.Seconds(), "runs/s")
	b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
}
