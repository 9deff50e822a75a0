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

	cancel context.CancelFunc // stops the early hashing
	hashes *blobHashes
}

// NewAhead starts a proof of ref against want, the graph being pushed
// there. ctx bounds its early hashing; Close stops it, and its owner calls
// Close when the push ends, proven or not.
func NewAhead(ctx context.Context, c *registry.Client, ref name.Digest, want oci.Graph, opts Options) *Ahead {
	ctx, cancel := context.WithCancel(ctx)
	repo := sync.OnceValues(func() (*registry.Repo, error) { return c.Open(ctx, ref.Context(), false) })
	return &Ahead{c: c, ref: ref, want: want, opts: opts, cancel: cancel, hashes: newBlobHashes(ctx, repo, opts.Jobs, nil)}
}

// Arrived starts hashing b from the destination, unless it has already.
func (a *Ahead) Arrived(b v1.Descriptor) { a.hashes.start(b) }

// Prove waits for the blobs being hashed, then proves the image as Image
// does, pulling only the blobs not hashed yet (and those whose hashing
// failed for a moment), and returns the verify stage's detail.
func (a *Ahead) Prove(ctx context.Context) (string, error) {
	hashed := a.hashes.wait()
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
	a.hashes.wait()
}

// blobHashes hashes blobs from a repository in the background, jobs at a
// time and each once, and remembers what each hashed to.
type blobHashes struct {
	ctx   context.Context // bounds the hashing
	repo  func() (*registry.Repo, error)
	slots chan struct{}
	wg    sync.WaitGroup

	mu      sync.Mutex
	started map[digest.Digest]bool
	hashed  map[digest.Digest]error // what each blob hashed to, once it has
}

// newBlobHashes hashes from repo within ctx; known is what blobs hashed to
// before (they are not hashed again).
func newBlobHashes(ctx context.Context, repo func() (*registry.Repo, error), jobs int, known map[digest.Digest]error) *blobHashes {
	h := &blobHashes{ctx: ctx, repo: repo, slots: make(chan struct{}, max(jobs, 1)),
		started: map[digest.Digest]bool{}, hashed: map[digest.Digest]error{}}
	for d, err := range known {
		h.started[d], h.hashed[d] = true, err
	}
	return h
}

// start hashes b, unless it is hashed or being hashed.
func (h *blobHashes) start(b v1.Descriptor) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.started[b.Digest] {
		return
	}
	h.started[b.Digest] = true
	h.wg.Go(func() {
		err := h.hash(b)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.hashed[b.Digest] = err
	})
}

func (h *blobHashes) hash(b v1.Descriptor) error {
	select {
	case h.slots <- struct{}{}:
		defer func() { <-h.slots }()
	case <-h.ctx.Done():
		return h.ctx.Err()
	}
	repo, err := h.repo()
	if err != nil {
		return err
	}
	_, err = hashBlob(h.ctx, repo, b)
	return err
}

// wait waits for the blobs started, and returns what each hashed to (a
// failure for a moment, such as being stopped, is hashed again by
// hashBlobs).
func (h *blobHashes) wait() map[digest.Digest]error {
	h.wg.Wait()
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.hashed)
}
