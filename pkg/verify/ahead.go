package verify

import (
	"context"
	"fmt"
	"maps"
	"sync"

	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Ahead proves an image at the destination of a push that is still going
// on: it pulls and hashes each blob as soon as the push says the
// destination holds it (registry.Proof's Arrived), while the rest is being
// copied, and its Prove then does what Image does without pulling those
// blobs again. The proof is the same — every byte is read back from the
// destination and hashed — started earlier. It is a registry.Proof for
// registry.VerifyBeforeTag.
type Ahead struct {
	c    *registry.Client
	ref  name.Digest
	want oci.Graph
	opts Options
	// Report is what Prove proved, once it has.
	Report Report

	ctx    context.Context // bounds the early hashing
	cancel context.CancelFunc
	repo   func() (*registry.Repo, error)
	slots  chan struct{} // bounds blobs hashed at once
	wg     sync.WaitGroup

	mu      sync.Mutex
	started map[digest.Digest]bool
	hashed  map[digest.Digest]error // what each blob hashed to, once it has
}

// NewAhead starts a proof of ref against want, the graph being pushed
// there. ctx bounds its early hashing; Close stops it, and its owner calls
// Close when the push ends, proven or not.
func NewAhead(ctx context.Context, c *registry.Client, ref name.Digest, want oci.Graph, opts Options) *Ahead {
	ctx, cancel := context.WithCancel(ctx)
	a := &Ahead{c: c, ref: ref, want: want, opts: opts, ctx: ctx, cancel: cancel,
		slots: make(chan struct{}, max(opts.Jobs, 1)), started: map[digest.Digest]bool{}, hashed: map[digest.Digest]error{}}
	a.repo = sync.OnceValues(func() (*registry.Repo, error) { return c.Open(ctx, ref.Context(), false) })
	return a
}

// Arrived starts hashing b from the destination, unless it has already.
func (a *Ahead) Arrived(b v1.Descriptor) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.started[b.Digest] {
		return
	}
	a.started[b.Digest] = true
	a.wg.Go(func() {
		err := a.hash(b)
		a.mu.Lock()
		defer a.mu.Unlock()
		a.hashed[b.Digest] = err
	})
}

func (a *Ahead) hash(b v1.Descriptor) error {
	select {
	case a.slots <- struct{}{}:
		defer func() { <-a.slots }()
	case <-a.ctx.Done():
		return a.ctx.Err()
	}
	repo, err := a.repo()
	if err != nil {
		return err
	}
	_, err = hashBlob(a.ctx, repo, b)
	return err
}

// Prove waits for the blobs being hashed, then proves the image as Image
// does, pulling only the blobs not hashed yet (and those whose hashing
// failed for a moment), and returns the verify stage's detail.
func (a *Ahead) Prove(ctx context.Context) (string, error) {
	a.wg.Wait()
	a.mu.Lock()
	hashed := maps.Clone(a.hashed)
	a.mu.Unlock()
	rep, err := prove(ctx, a.c, a.ref, &a.want, a.opts, hashed)
	if err != nil {
		return "", err
	}
	a.Report = rep
	root := a.ref.DigestStr()
	return fmt.Sprintf("%s proven at %s: %d descriptors, %d bytes hashed (%d blobs as they arrived), %d referrers",
		root[:min(len(root), len("sha256:")+12)], a.ref.Context(), rep.Descriptors, rep.BytesHashed, len(hashed), len(a.want.Referrers)), nil
}

// Close stops the early hashing and waits for it.
func (a *Ahead) Close() {
	a.cancel()
	a.wg.Wait()
}
