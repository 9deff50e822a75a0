package oci

import (
	"bytes"
	"io"
	"os"
	"testing"
)

// TestSpillKeepsSmallLayersInMemory: a layer is read back as written,
// from memory while it is small and from a temporary file once it grows
// past spillLimit; the file is gone once the layer is stored.
func TestSpillKeepsSmallLayersInMemory(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	for _, size := range []int{0, 1000, spillLimit, spillLimit + 1, 3*spillLimit + 12345} {
		want := bytes.Repeat([]byte("layer bytes "), size/12+1)[:size]
		s := &spill{}
		for rest := want; len(rest) > 0; {
			n := min(len(rest), 1<<20+7) // writes that straddle the limit
			if _, err := s.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		if onDisk := s.file != nil; onDisk != (size > spillLimit) {
			t.Errorf("%d bytes: on disk %v", size, onDisk)
		}
		r, err := s.reader()
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: read back %d bytes, %v", size, len(got), err)
		}
		s.close()
		if left, _ := os.ReadDir(os.Getenv("TMPDIR")); len(left) != 0 {
			t.Fatalf("%d bytes: %d temporary files left", size, len(left))
		}
	}
}
