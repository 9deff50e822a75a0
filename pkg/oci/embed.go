package oci

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// A graph can carry its small blobs in its descriptors' data field (OCI's
// embedded content, base64 in JSON): a build.completed does, so the pusher
// takes the manifests and configs it uploads from the event, and the blob
// store is neither written nor read for them. A blob goes into the store
// only when the graph does not carry it.
const (
	// EmbedLimit is the largest blob a graph carries embedded.
	EmbedLimit = 4 << 10
	// embedBudget bounds what one graph carries embedded in all.
	embedBudget = 16 << 10
	// keepBudget bounds what an Embedding holds back from the store: a
	// build of many small blobs holds the first of them, and puts the
	// rest into the store as any bigger blob is.
	keepBudget = 1 << 20
)

// Embedding is a BlobStore that holds back each blob of up to EmbedLimit
// bytes put through it (the first MiB of them) instead of putting it into
// the wrapped store, and serves it from memory, until Embed.
type Embedding struct {
	BlobStore
	mu   sync.Mutex
	kept map[digest.Digest]keptBlob
	size int // of what is kept
}

// keptBlob is a blob an Embedding holds back.
type keptBlob struct {
	desc v1.Descriptor
	data []byte
}

// NewEmbedding wraps store.
func NewEmbedding(store BlobStore) *Embedding {
	return &Embedding{BlobStore: store, kept: map[digest.Digest]keptBlob{}}
}

// Put holds the blob back when it is small and there is room, after
// checking it against desc as the store would; it puts any other blob
// into the wrapped store.
func (e *Embedding) Put(ctx context.Context, desc v1.Descriptor, r io.Reader) error {
	if desc.Size > EmbedLimit {
		return e.BlobStore.Put(ctx, desc, r)
	}
	data, err := io.ReadAll(io.LimitReader(r, desc.Size+1))
	if err != nil {
		return err
	}
	if !Matches(desc, data) {
		return fmt.Errorf("put %s: content does not match its digest and size", desc.Digest)
	}
	e.mu.Lock()
	_, ok := e.kept[desc.Digest]
	room := !ok && e.size+len(data) <= keepBudget
	if room {
		e.kept[desc.Digest] = keptBlob{desc, data}
		e.size += len(data)
	}
	e.mu.Unlock()
	if ok || room {
		return nil
	}
	return e.BlobStore.Put(ctx, desc, bytes.NewReader(data))
}

// Open serves a blob held back from memory, any other from the store.
func (e *Embedding) Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	e.mu.Lock()
	k, ok := e.kept[d]
	e.mu.Unlock()
	if ok {
		return io.NopCloser(bytes.NewReader(k.data)), nil
	}
	return e.BlobStore.Open(ctx, d)
}

// Embed sets the data of g's descriptors (its referrers' too) whose blobs
// it holds, in order, until embedBudget bytes are embedded (Root is not
// given data: it is one of g's descriptors already), and puts every blob
// it holds and did not embed into the store: each blob put through it is
// then in g or in the store.
func (e *Embedding) Embed(ctx context.Context, g *Graph) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	budget := embedBudget
	embedded := map[digest.Digest]bool{}
	eachGraph(g, func(g *Graph) {
		for i, d := range g.Descriptors {
			if k, ok := e.kept[d.Digest]; ok && len(k.data) <= budget {
				g.Descriptors[i].Data = k.data
				budget -= len(k.data)
				embedded[d.Digest] = true
			}
		}
	})
	for _, d := range slices.Sorted(maps.Keys(e.kept)) {
		if k := e.kept[d]; !embedded[d] {
			if err := e.BlobStore.Put(ctx, k.desc, bytes.NewReader(k.data)); err != nil {
				return err
			}
			delete(e.kept, d)
			e.size -= len(k.data)
		}
	}
	return nil
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
