package oci_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/digestline/digestline/pkg/oci"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/schema"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

func descOf(b []byte) v1.Descriptor {
	return v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: digest.FromBytes(b), Size: int64(len(b))}
}

// readsOnly is a blob store a test expects no read of, but of one digest.
type readsOnly struct {
	t    *testing.T
	from oci.BlobReader
	only digest.Digest
}

func (r readsOnly) Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	if d != r.only {
		r.t.Errorf("read %s from the store", d)
	}
	return r.from.Open(ctx, d)
}

// TestSmallBlobsTravelInTheGraph: the small blobs a build puts through an
// Embedding are served from memory while it builds and embedded in the
// graph's descriptors (not the big one, not the root, and not past the
// budget) instead of stored; every blob not embedded is in the store.
// Embedded serves them back without reading the store, leaving the graph
// without data; data that does not match its descriptor is not served.
func TestSmallBlobsTravelInTheGraph(t *testing.T) {
	ctx := context.Background()
	mem := &oci.MemStore{}
	small, big := []byte(`{"config":true}`), bytes.Repeat([]byte("x"), oci.EmbedLimit+1)
	store := oci.NewEmbedding(mem)
	var g oci.Graph
	put := func(b []byte) {
		t.Helper()
		d := descOf(b)
		if err := store.Put(ctx, d, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		g.Descriptors = append(g.Descriptors, d)
	}
	put(small)
	put(big)
	// Many small blobs: what fits in the budget is embedded, the rest not.
	for i := range 8 {
		put(bytes.Repeat([]byte{byte('a' + i)}, oci.EmbedLimit))
	}
	put(small) // twice, as a graph may hold one blob twice
	g.Root = g.Descriptors[0]
	// While the build goes on, what it put is there to read back.
	for _, d := range g.Descriptors {
		if rc, err := store.Open(ctx, d.Digest); err != nil {
			t.Errorf("%s cannot be read back: %v", d.Digest, err)
		} else {
			rc.Close()
		}
	}
	bad := descOf([]byte("what it claims"))
	if err := store.Put(ctx, bad, strings.NewReader("something else!")); err == nil {
		t.Error("a blob that does not match its descriptor was taken")
	}
	if err := store.Embed(ctx, &g); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g.Descriptors[0].Data, small) || g.Descriptors[1].Data != nil || g.Root.Data != nil {
		t.Fatalf("embedded: small %q, big %d bytes, root %d bytes", g.Descriptors[0].Data, len(g.Descriptors[1].Data), len(g.Root.Data))
	}
	embedded := 0
	for _, d := range g.Descriptors {
		embedded += len(d.Data)
		// What the event carries is an OCI descriptor with embedded
		// content, as the image-spec's own schema has it.
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := schema.ValidatorMediaTypeDescriptor.Validate(bytes.NewReader(b)); err != nil {
			t.Errorf("%s: %v\n%s", d.Digest, err, b)
		}
		rc, err := mem.Open(ctx, d.Digest)
		switch stored := err == nil; {
		case stored == (d.Data != nil):
			t.Errorf("%s: embedded %t, stored %t (%v)", d.Digest, d.Data != nil, stored, err)
		case stored:
			rc.Close()
		}
	}
	if embedded > 16<<10 || embedded < 12<<10 {
		t.Errorf("%d bytes embedded, want the budget's 16 KiB at most, filled", embedded)
	}

	// The pusher's side: the graph as the event carries it, one blob's
	// data tampered with.
	tampered := g.Descriptors[2].Digest
	g.Descriptors[2].Data = []byte(strings.Repeat("z", oci.EmbedLimit))
	src := oci.Embedded(&g, readsOnly{t, mem, tampered})
	for _, d := range g.Descriptors {
		if d.Data != nil {
			t.Fatalf("%s still has data", d.Digest)
		}
	}
	rc, err := src.Open(ctx, g.Root.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(rc); !bytes.Equal(got, small) {
		t.Errorf("served %q, want %q", got, small)
	}
	if rc, err := src.Open(ctx, tampered); !errors.Is(err, oci.ErrBlobNotFound) {
		if err == nil {
			rc.Close()
		}
		t.Errorf("tampered data: %v, want it not served (and the store asked)", err)
	}
}
