package events

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/digestline/digestline/pkg/oci"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// BlobStore is the JetStream Object Store as an oci.BlobStore: objects are
// named by digest, so storing the same blob twice stores it once, and any
// process on the bus can read what the builder wrote.
type BlobStore struct {
	obs jetstream.ObjectStore
}

var _ oci.BlobStore = (*BlobStore)(nil)

// OpenBlobStore opens the provisioned blob bucket.
func OpenBlobStore(ctx context.Context, js jetstream.JetStream) (*BlobStore, error) {
	obs, err := js.ObjectStore(ctx, BlobBucket)
	if err != nil {
		return nil, fmt.Errorf("open object store %s (is the bus provisioned?): %w", BlobBucket, err)
	}
	return &BlobStore{obs: obs}, nil
}

// blobChunkSize is the Object Store's own default chunk size.
const blobChunkSize = 128 << 10

// Put streams r into the store under desc's digest unless it is there already.
// It verifies what it read: a blob that does not match desc is not kept.
func (s *BlobStore) Put(ctx context.Context, desc v1.Descriptor, r io.Reader) error {
	name := desc.Digest.String()
	if info, err := s.obs.GetInfo(ctx, name); err == nil && info.Size == uint64(desc.Size) {
		return nil
	}
	v := desc.Digest.Verifier()
	// Chunks no bigger than the blob: the Object Store allocates one chunk
	// buffer per put, 128 KiB by default, for blobs that are mostly a few
	// hundred bytes (configs, manifests, small layers).
	meta := jetstream.ObjectMeta{Name: name, Opts: &jetstream.ObjectMetaOptions{ChunkSize: uint32(min(max(desc.Size, 1), blobChunkSize))}}
	if _, err := s.obs.Put(ctx, meta, io.TeeReader(r, v)); err != nil {
		return fmt.Errorf("%w: put %s into %s: %w", oci.ErrStore, name, BlobBucket, err)
	}
	if !v.Verified() {
		_ = s.obs.Delete(context.WithoutCancel(ctx), name)
		return fmt.Errorf("put %s: content does not match its digest", name)
	}
	return nil
}

// Open streams a blob; the digest is checked when the object store reads it
// (chunk digests), and again by whoever consumes it.
func (s *BlobStore) Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	r, err := s.obs.Get(ctx, d.String())
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("%s in %s: %w", d, BlobBucket, oci.ErrBlobNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: get %s from %s: %w", oci.ErrStore, d, BlobBucket, err)
	}
	return r, nil
}
