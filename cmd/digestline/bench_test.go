package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/dev"
	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/cmd/digestline/internal/ship"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/policy"
	"github.com/digestline/digestline/pkg/telemetry"
	"github.com/digestline/digestline/services/reporter"
	"github.com/google/uuid"
	"github.com/opencontainers/go-digest"
)

// BenchmarkShip measures one whole run of a tiny image through the
// in-process stack: build.requested → build → push → verify → promoted.
// Each run ships new content (a new commit, as CI sends) to a repository
// of its own: plain, and
// signed: the build signed and its provenance attested, every signature
// and attestation proven by the verifier, dev's policy (three rules over
// that evidence) evaluated, and a signed verification summary attached to
// the promotion.
func BenchmarkShip(b *testing.B) {
	for _, tc := range []struct {
		name string
		opts []e2etest.Option
	}{{"plain", nil}, {"signed", []e2etest.Option{withEvidence(b)}}} {
		b.Run(tc.name, func(b *testing.B) {
			s, _ := e2etest.StartStack(b, tc.opts...)
			i := 0
			for b.Loop() {
				// A repository of its own: the embedded registry (olareg)
				// rewrites a repository's whole index on every manifest
				// pushed, so one repository would make later runs slower.
				b.StopTimer()
				dir, target := e2etest.SourceDir(b, fmt.Sprintf("bench %d", i)), fmt.Sprintf("bench/app%d:lab", i)
				i++
				b.StartTimer()
				if _, out, err := s.Ship(b, dir, target); err != nil {
					b.Fatalf("ship: %v\n%s", err, out)
				}
			}
		})
	}
}

// BenchmarkSigningAdds measures what signing and policies add to a tiny
// run, on two stacks side by side (one plain, one signed as
// BenchmarkShip/signed): each iteration ships the same new content through
// both, in turn, and the metric is the median of the pairs' differences.
// Two separate BenchmarkShip rows each take the machine's speed of their
// own moment; a pair shares it.
func BenchmarkSigningAdds(b *testing.B) { signingAdds(b) }

// BenchmarkAway measures the same pairs as BenchmarkSigningAdds with the
// embedded registry 2 ms away: each of its answers comes 2 ms late, as a
// registry's in the same region does. A run then waits on its round trips
// to the registry, not on the CPU; what signing adds is a few more of them.
func BenchmarkAway(b *testing.B) {
	b.Run("signing-adds", func(b *testing.B) { signingAdds(b, withRegistryLatency(2*time.Millisecond)) })
}

// signingAdds ships the same new content through two stacks made with
// opts, one plain and one signed, in turn; every other pair the signed one
// first. It reports the median of the pairs' differences (added-ms) and of
// the plain runs (plain-ms).
func signingAdds(b *testing.B, opts ...e2etest.Option) {
	plain, _ := e2etest.StartStack(b, opts...)
	signed, _ := e2etest.StartStack(b, append(opts, withEvidence(b))...)
	stacks := [2]*e2etest.Stack{plain, signed}
	var added, plains []time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		dir := e2etest.SourceDir(b, fmt.Sprintf("pair %d", i))
		b.StartTimer()
		order := []int{0, 1}
		if i%2 == 1 {
			order = []int{1, 0}
		}
		var took [2]time.Duration
		for _, k := range order {
			start := time.Now()
			if _, out, err := stacks[k].Ship(b, dir, fmt.Sprintf("pair/app%d:lab", i)); err != nil {
				b.Fatalf("ship: %v\n%s", err, out)
			}
			took[k] = time.Since(start)
		}
		added, plains = append(added, took[1]-took[0]), append(plains, took[0])
	}
	b.ReportMetric(float64(median(added))/1e6, "added-ms")
	b.ReportMetric(float64(median(plains))/1e6, "plain-ms")
}

// withRegistryLatency makes the embedded registry answer every request d
// late.
func withRegistryLatency(d time.Duration) e2etest.Option {
	return e2etest.WithRegistryWrapper(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(d)
			h.ServeHTTP(w, r)
		})
	})
}

// median is the middle of ds (of the two middle ones, the upper).
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// withEvidence signs every build and promotion with a fresh key, trusts it
// in the verifier and the reporter, and gives dev a policy over the
// evidence: what signing and policies cost a run.
func withEvidence(t testing.TB) e2etest.Option {
	t.Helper()
	dir := t.TempDir()
	signing := e2etest.WithSigningKey(t, dir)
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(`environments:
  dev:
    rules:
      - name: signed
        expr: signatures.size() > 0
      - name: provenance
        expr: has(provenance.runDetails) && provenance.runDetails.builder.id == "https://github.com/digestline/digestline/services/builder"
      - name: no-refused-package
        expr: '!packages.exists(p, p.name == "openssl")'
`), 0o644); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(policyFile, reporter.DefaultEnvironments)
	if err != nil {
		t.Fatal(err)
	}
	return func(c *dev.Config) {
		signing(c)
		c.Reporter.Policy = pol
	}
}

// seedStages fills the events stream with the push stages of runs earlier
// runs (20 each, as a push of several blobs reports them), through the
// bus's own publish: no service consumes a stage, so they are history
// only.
func seedStages(b *testing.B, bs *bus.Bus, runs int) {
	ctx := context.Background()
	for i := range runs {
		start, err := events.NewEvent(bs.Source(), events.BuildRequested, uuid.NewString(), "history", events.BuildRequest{Target: "history/app:1"})
		if err != nil {
			b.Fatal(err)
		}
		em := bs.Emitter(start)
		for j := range 20 {
			em.Emit(ctx, events.PushStage, "", events.StageReport{Target: "history/app:1", Stage: "upload", Status: events.StatusOK, Detail: fmt.Sprintf("run %d blob %d", i, j)})
		}
		if err := em.Wait(ctx); err != nil {
			b.Fatal(err)
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
//   - paced-history: the paced 200 on a bus that already holds the events
//     of 5,000 earlier runs: what a run costs once history has grown.
func BenchmarkLoad(b *testing.B) {
	b.Run("burst", func(b *testing.B) { benchLoad(b, 0, 0) })
	b.Run("paced", func(b *testing.B) { benchLoad(b, 50, 0) })
	b.Run("paced-history", func(b *testing.B) { benchLoad(b, 50, 5000) })
	b.Run("paced-signed", func(b *testing.B) { benchLoad(b, 50, 0, withEvidence(b)) })
	b.Run("floor", func(b *testing.B) { benchFloor(b, 50, false) })
	b.Run("floor-stores", func(b *testing.B) { benchFloor(b, 50, true) })
}

// benchLoad sends 200 runs at perSecond (0: all at once), after history
// earlier runs' stages.
func benchLoad(b *testing.B, perSecond, history int, opts ...e2etest.Option) {
	const runs = 200
	ctx := context.Background()
	// Logs, traces and metrics as `digestline dev` has them (no span kept
	// in memory, as the tests' recorder keeps every span of the load).
	tel, err := telemetry.Setup(ctx, "digestline-dev", os.Stderr, "info")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(tel.Close)
	s, _ := e2etest.StartStack(b, append([]e2etest.Option{e2etest.WithTelemetry(tel)}, opts...)...)
	seedStages(b, s.Bus, history)
	srcs := make([]digest.Digest, runs)
	for i := range srcs {
		var err error
		if srcs[i], err = ship.Upload(ctx, s.JetStream, e2etest.SourceDir(b, fmt.Sprintf("load %d", i))); err != nil {
			b.Fatal(err)
		}
	}
	var latencies []time.Duration
	var elapsed, cpu time.Duration
	var msgs uint64
	parts := startCPUParts()
	for b.Loop() {
		cpuBefore, statsBefore := cpuTime(b), s.Conn.Stats()
		// One follower for the whole batch: promoted events, from now on.
		from, err := bus.FollowFrom(ctx, s.JetStream)
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
				ev, err := events.NewEvent(s.Bus.Source(), events.BuildRequested, uuid.NewString(), "load", events.BuildRequest{
					Source: events.Source{Kind: events.SourceObject, Object: src.String()},
					Target: fmt.Sprintf("%s/load/app%d:1", s.RegistryAddr, i)})
				if err == nil {
					mu.Lock() // before it is sent: its promoted event may come first
					requested[events.RunID(ev)] = ev.Time()
					mu.Unlock()
					err = s.Bus.Publish(ctx, ev)
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
		cpu += cpuTime(b) - cpuBefore
		stats := s.Conn.Stats()
		msgs += stats.InMsgs - statsBefore.InMsgs + stats.OutMsgs - statsBefore.OutMsgs
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
	// The whole stack runs in this process: its CPU time (user and system)
	// over the runs is what a run costs, the pipeline and its NATS and
	// registry together; own-cpu-ms/run is the pipeline's share.
	perRun := float64(cpu.Microseconds()) / 1000 / float64(runs*b.N)
	b.ReportMetric(perRun, "cpu-ms/run")
	parts.report(b, perRun)
	// What the host's noise cannot move: the messages the services (one
	// connection in `digestline dev`) sent to the server and received from
	// it for a run: events, acknowledgements, deliveries, reads and writes
	// of the buckets and the index, and their replies.
	b.ReportMetric(float64(msgs)/float64(runs*b.N), "msgs/run")
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
