package main

import (
	"testing"
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
