package oci

import (
	"bytes"
	"context"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// A graph can carry its small blobs in its descriptors' data field (OCI's
// embedded content, base64 in JSON): a build.completed does, so the pusher
// takes the manifests and configs it uploads from the event instead of two
// reads of the blob store each. The blob store keeps them all the same.
const (
	// EmbedLimit is the largest blob a graph carries embedded.
	EmbedLimit = 4 << 10
	// embedBudget bounds what one graph carries embedded in all.
	embedBudget = 16 << 10
	// keepBudget bounds what an Embedding keeps for it: a build of many
	// small blobs keeps the first of them, and the rest are read from the
	// store as any bigger blob is.
	keepBudget = 1 << 20
)

// Embedding is a BlobStore that keeps a copy of each blob of up to
// EmbedLimit bytes put through it (the first MiB of them), for Embed.
type Embedding struct {
	BlobStore
	mu   sync.Mutex
	kept map[digest.Digest][]byte
	size int // of what is kept
}

// NewEmbedding wraps store.
func NewEmbedding(store BlobStore) *Embedding {
	return &Embedding{BlobStore: store, kept: map[digest.Digest][]byte{}}
}

// Put puts the blob into the wrapped store and, when it is small, keeps it.
func (e *Embedding) Put(ctx context.Context, desc v1.Descriptor, r io.Reader) error {
	if desc.Size > EmbedLimit {
		return e.BlobStore.Put(ctx, desc, r)
	}
	data, err := io.ReadAll(io.LimitReader(r, desc.Size+1))
	if err != nil {
		return err
	}
	if err := e.BlobStore.Put(ctx, desc, bytes.NewReader(data)); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	// What the store took (it refused anything else), while there is room.
	if _, ok := e.kept[desc.Digest]; !ok && Matches(desc, data) && e.size+len(data) <= keepBudget {
		e.kept[desc.Digest] = data
		e.size += len(data)
	}
	return nil
}

// Embed sets the data of g's descriptors (its referrers' too) whose blobs
// it kept, in order, until embedBudget bytes are embedded. Root is not
// given data: it is one of g's descriptors already.
func (e *Embedding) Embed(g *Graph) {
	e.mu.Lock()
	defer e.mu.Unlock()
	budget := embedBudget
	eachGraph(g, func(g *Graph) {
		for i, d := range g.Descriptors {
			if data, ok := e.kept[d.Digest]; ok && len(data) <= budget {
				g.Descriptors[i].Data = data
				budget -= len(data)
			}
		}
	})
}

// eachGraph calls f with g, then with each of its referrers, depth first.
func eachGraph(g *Graph, f func(*Graph)) {
	f(g)
	for i := range g.Referrers {
		eachGraph(&g.Referrers[i], f)
	}
}

// Embedded takes the data out of g's descriptors (its root's and its
// referrers' too) and returns a BlobReader that serves it ahead of next:
// g is left as a graph without data, for whatever is made of it (a
// manifest's subject, a referrers index) to hold none. Data that does not
// match its descriptor is dropped, and that blob read from next.
func Embedded(g *Graph, next BlobReader) BlobReader {
	kept := map[digest.Digest][]byte{}
	take := func(d *v1.Descriptor) {
		if d.Data != nil && Matches(*d, d.Data) {
			kept[d.Digest] = d.Data
		}
		d.Data = nil
	}
	eachGraph(g, func(g *Graph) {
		take(&g.Root)
		for i := range g.Descriptors {
			take(&g.Descriptors[i])
		}
	})
	if len(kept) == 0 {
		return next
	}
	return InHand(kept, next)
}

// InHand is a BlobReader that serves the blobs already in hand (read,
// embedded) and reads the others from rest.
func InHand(blobs map[digest.Digest][]byte, rest BlobReader) BlobReader {
	return inHand{blobs: blobs, rest: rest}
}

type inHand struct {
	blobs map[digest.Digest][]byte
	rest  BlobReader
}

func (h inHand) Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	if b, ok := h.blobs[d]; ok {
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	return h.rest.Open(ctx, d)
}
