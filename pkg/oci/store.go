package oci

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// ErrBlobNotFound is returned by a BlobStore that does not hold a digest.
var ErrBlobNotFound = errors.New("blob not found")

// ErrStore marks a failure of the blob store itself (not of the content), so
// callers can retry it.
var ErrStore = errors.New("blob store")

// BlobReader opens blobs by digest. The JetStream Object Store, an OCI
// layout and a registry all serve as one.
type BlobReader interface {
	Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error)
}

// BlobStore stores and opens blobs by digest. Put must be idempotent: putting
// a blob that is already stored is a cheap no-op. Both are safe for
// concurrent use, the same blob put twice at once included.
type BlobStore interface {
	BlobReader
	Put(ctx context.Context, desc v1.Descriptor, r io.Reader) error
}

// CopyBlob streams one blob from src into dst; dst verifies it against d.
func CopyBlob(ctx context.Context, dst BlobStore, src BlobReader, d v1.Descriptor) error {
	rc, err := src.Open(ctx, d.Digest)
	if err != nil {
		return err
	}
	defer rc.Close()
	return dst.Put(ctx, d, rc)
}

// Matches reports whether b is the blob desc describes: its size, and its
// digest by desc's algorithm (false for one that is malformed or not
// available here).
func Matches(desc v1.Descriptor, b []byte) bool {
	return int64(len(b)) == desc.Size && desc.Digest.Validate() == nil && desc.Digest.Algorithm().FromBytes(b) == desc.Digest
}

// MemStore is a BlobStore in memory, for small graphs built to be pushed at
// once (an attestation, a signature). It verifies what it is given.
type MemStore struct {
	mu    sync.Mutex
	blobs map[digest.Digest][]byte
}

// Put stores the blob after checking it against desc.
func (m *MemStore) Put(_ context.Context, desc v1.Descriptor, r io.Reader) error {
	b, err := io.ReadAll(io.LimitReader(r, desc.Size+1))
	if err != nil {
		return err
	}
	if !Matches(desc, b) {
		return fmt.Errorf("%w: blob %s does not match its descriptor", ErrStore, desc.Digest)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.blobs == nil {
		m.blobs = map[digest.Digest][]byte{}
	}
	m.blobs[desc.Digest] = b
	return nil
}

// Open reads a stored blob.
func (m *MemStore) Open(_ context.Context, d digest.Digest) (io.ReadCloser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.blobs[d]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrBlobNotFound, d)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}
