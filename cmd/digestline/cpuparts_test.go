package main

import (
	"bytes"
	"fmt"
	"maps"
	"regexp"
	"runtime/pprof"
	"slices"
	"strings"
	"testing"

	"github.com/digestline/digestline/cmd/digestline/internal/dev"
	"github.com/google/pprof/profile"
)

// cpuParts profiles the CPU while a benchmark runs the stack, to tell what
// a run costs the pipeline itself from what is the work it asks for:
// hashing and compression (wherever they run) and the embedded registry
// (the goroutines labelled dev.PartLabel "registry"). The rest is the
// pipeline's own overhead: the services, the bus (the embedded NATS server
// and its client), the Go runtime's garbage collector.
type cpuParts struct {
	buf bytes.Buffer
	on  bool
}

// work are the functions whose CPU is the work a run asks for, not the
// pipeline's overhead.
var work = regexp.MustCompile(`^(crypto/sha256|crypto/internal/fips140/sha256|compress/|github\.com/klauspost/compress/)`)

// startCPUParts starts profiling; with -cpuprofile set the process is being
// profiled already, and the breakdown is not reported.
func startCPUParts() *cpuParts {
	p := &cpuParts{}
	p.on = pprof.StartCPUProfile(&p.buf) == nil
	return p
}

// report stops profiling and reports the overhead's share of cpuMS (what a
// run cost the process) as own-cpu-ms/run, and logs each part's.
func (p *cpuParts) report(b *testing.B, cpuMS float64) {
	if !p.on {
		return
	}
	pprof.StopCPUProfile()
	prof, err := profile.Parse(&p.buf)
	if err != nil {
		b.Fatalf("read the CPU profile: %v", err)
	}
	parts := map[string]int64{}
	var total int64
	for _, s := range prof.Sample {
		v := s.Value[1] // cpu nanoseconds
		total += v
		parts[partOf(s)] += v
	}
	if total == 0 {
		return
	}
	own := total - parts["hashing, compression"] - parts["registry"]
	b.ReportMetric(cpuMS*float64(own)/float64(total), "own-cpu-ms/run")
	var shares []string
	for _, name := range slices.Sorted(maps.Keys(parts)) {
		shares = append(shares, fmt.Sprintf("%s %.1f", name, cpuMS*float64(parts[name])/float64(total)))
	}
	b.Logf("cpu-ms/run by part: %s", strings.Join(shares, ", "))
}

// partOf names what a sample's CPU went to: the work, the NATS server (its
// goroutines carry labels of its own), or the part of the stack it ran in
// (dev.PartLabel; "bus client and runtime" when unlabelled).
func partOf(s *profile.Sample) string {
	nats := false
	for _, loc := range s.Location {
		for _, line := range loc.Line {
			if work.MatchString(line.Function.Name) {
				return "hashing, compression"
			}
			nats = nats || strings.HasPrefix(line.Function.Name, "github.com/nats-io/nats-server/")
		}
	}
	if nats {
		return "nats"
	}
	if l := s.Label[dev.PartLabel]; len(l) > 0 {
		return l[0]
	}
	return "bus client and runtime"
}
