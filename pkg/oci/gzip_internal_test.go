package oci

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/pgzip"
)

// TestReusedGzipWritersWriteTheSameBytes: a layer's digest must not depend
// on whether its gzip writer is new or reused from an earlier layer of
// another size, level or number of jobs.
func TestReusedGzipWritersWriteTheSameBytes(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	text := func(n int) []byte { // compressible, with some randomness
		b := make([]byte, n)
		for i := range b {
			b[i] = "abcdefgh  \n"[rng.IntN(11)]
		}
		return b
	}
	fresh := func(in []byte, level, jobs int) []byte {
		var out bytes.Buffer
		zw, err := pgzip.NewWriterLevel(&out, level)
		if err != nil {
			t.Fatal(err)
		}
		if err := zw.SetConcurrency(gzipBlockSize, jobs); err != nil {
			t.Fatal(err)
		}
		_, _ = zw.Write(in)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	all := text(2*gzipBlockSize + 12345)
	inputs := [][]byte{nil, all[:100], all[:gzipBlockSize-1], all[:gzipBlockSize+1], all}
	type key struct{ input, level, jobs int }
	want := map[key][]byte{}
	for round := range 2 { // the second round gets writers back from the pools
		for i, in := range inputs {
			for _, level := range []int{2, 6} {
				for _, jobs := range []int{1, 3} {
					var out bytes.Buffer
					zw, err := newGzipWriter(&out, level, jobs)
					if err != nil {
						t.Fatal(err)
					}
					// Written in uneven pieces, as a tar writer does.
					for rest := in; len(rest) > 0; {
						n := min(len(rest), 1+rng.IntN(100_000))
						if _, err := zw.Write(rest[:n]); err != nil {
							t.Fatal(err)
						}
						rest = rest[n:]
					}
					if err := zw.Close(); err != nil {
						t.Fatal(err)
					}
					k := key{i, level, jobs}
					if want[k] == nil {
						want[k] = fresh(in, level, jobs)
					}
					if !bytes.Equal(out.Bytes(), want[k]) {
						t.Fatalf("round %d, input %d (%d bytes), level %d, %d jobs: a reused writer wrote %d bytes that differ from a new one's %d",
							round, i, len(in), level, jobs, out.Len(), len(want[k]))
					}
				}
			}
		}
	}
}
