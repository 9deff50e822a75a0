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

// readsNothing is a blob store a test expects no read of.
type readsNothing struct{ t *testing.T }

func (r readsNothing) Open(_ context.Context, d digest.Digest) (io.ReadCloser, error) {
	r.t.Errorf("read %s from the store", d)
	return nil, errors.New("no")
}

// TestSmallBlobsTravelInTheGraph: what a build puts through an Embedding
// is in the store, the small blobs are embedded in the graph's descriptors
// (not the big one, not the root, and not past the budget), and Embedded
// serves them back without reading the store, leaving the graph without
// data; data that does not match its descriptor is read from the store.
func TestSmallBlobsTravelInTheGraph(t *testing.T) {
	ctx := context.Background()
	mem := &oci.MemStore{}
	small, big := []byte(`{"config":true}`), bytes.Repeat([]byte("x"), oci.EmbedLimit+1)
	store := oci.NewEmbedding(mem)
	var g oci.Graph
	for _, b := range [][]byte{small, big} {
		d := descOf(b)
		if err := store.Put(ctx, d, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		g.Descriptors = append(g.Descriptors, d)
	}
	// Many small blobs: what fits in the budget is embedded, the rest not.
	for i := range 8 {
		b := bytes.Repeat([]byte{byte('a' + i)}, oci.EmbedLimit)
		d := descOf(b)
		if err := store.Put(ctx, d, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		g.Descriptors = append(g.Descriptors, d)
	}
	g.Root = g.Descriptors[0]
	store.Embed(&g)
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
		if rc, err := mem.Open(ctx, d.Digest); err != nil {
			t.Errorf("%s is not in the store: %v", d.Digest, err)
		} else {
			rc.Close()
		}
	}
	if embedded > 16<<10 || embedded < 12<<10 {
		t.Errorf("%d bytes embedded, want the budget's 16 KiB at most, filled", embedded)
	}

	// The pusher's side: the graph as the event carries it, one blob's
	// data tampered with.
	g.Descriptors[2].Data = []byte(strings.Repeat("z", oci.EmbedLimit))
	src := oci.Embedded(&g, readsNothing{t})
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
	tampered := oci.Embedded(&oci.Graph{Descriptors: []v1.Descriptor{{Digest: digest.FromBytes(small), Size: int64(len(small)), Data: []byte("not it")}}}, mem)
	if rc, err := tampered.Open(ctx, digest.FromBytes(small)); err != nil {
		t.Fatal(err)
	} else if got, _ := io.ReadAll(rc); !bytes.Equal(got, small) {
		t.Errorf("tampered data served: %q", got)
	}
}
