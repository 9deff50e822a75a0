package oci_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/digestline/digestline/pkg/oci"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// discardStore hashes what it is given and keeps nothing, so the benchmark
// measures the builder, not the disk.
type discardStore struct{}

func (discardStore) Put(_ context.Context, _ v1.Descriptor, r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}

func (discardStore) Open(context.Context, digest.Digest) (io.ReadCloser, error) {
	return nil, oci.ErrBlobNotFound
}

// BenchmarkBuildImage builds a 64 MiB tree of 16 incompressible files into
// one gzip layer.
func BenchmarkBuildImage(b *testing.B) {
	src := b.TempDir()
	const files, size = 16, 4 << 20
	buf := make([]byte, size)
	for i := range files {
		_, _ = rand.Read(buf)
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%02d", i)), buf, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	p, _ := oci.ParsePlatform("")
	b.SetBytes(files * size)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := oci.BuildImage(context.Background(), src, oci.ImageConfig{Platform: p}, discardStore{}); err != nil {
			b.Fatal(err)
		}
	}
}
