package events

import (
	"bytes"
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
	obs    jetstream.ObjectStore
	stream jetstream.Stream // the bucket's stream, to read one-chunk objects directly
}

var _ oci.BlobStore = (*BlobStore)(nil)

// OpenBlobStore opens the provisioned blob bucket.
func OpenBlobStore(ctx context.Context, js jetstream.JetStream) (*BlobStore, error) {
	obs, err := js.ObjectStore(ctx, BlobBucket)
	if err != nil {
		return nil, fmt.Errorf("open object store %s (is the bus provisioned?): %w", BlobBucket, err)
	}
	stream, err := js.Stream(ctx, blobStream)
	if err != nil {
		return nil, fmt.Errorf("open stream %s of object store %s (is the bus provisioned?): %w", blobStream, BlobBucket, err)
	}
	return &BlobStore{obs: obs, stream: stream}, nil
}

// The Object Store's layout (NATS ADR-20): bucket B is the stream OBJ_B,
// and an object's chunks are the messages on $O.B.C.<the object's NUID>.
const (
	blobStream      = "OBJ_" + BlobBucket
	blobChunkPrefix = "$O." + BlobBucket + ".C."
)

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
//
// Most blobs of a run are one chunk (configs, manifests, signatures,
// provenance, small layers): those are read with two direct gets, the
// object's info and its chunk, and checked against d here. The Object
// Store's own Get makes a consumer on the server for every object, and
// deletes it after: for one small blob, most of its cost.
//
// Two builds that make the same new blob at once both store it, and the
// second put purges the first one's chunk: a read between the info and the
// chunk finds the chunk gone. It reads the new info then, a few times.
func (s *BlobStore) Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	for attempt := 1; ; attempt++ {
		rc, err := s.open(ctx, d)
		if !errors.Is(err, errChunkGone) || attempt == 5 {
			return rc, err
		}
	}
}

// errChunkGone: an object's info names a chunk the store no longer has.
var errChunkGone = errors.New("its chunk is gone (the blob was stored again meanwhile)")

func (s *BlobStore) open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	info, err := s.obs.GetInfo(ctx, d.String())
	if err != nil {
		return nil, s.getError(d, err)
	}
	if info.Chunks > 1 || info.Opts != nil && info.Opts.Link != nil {
		r, err := s.obs.Get(ctx, d.String())
		if err != nil {
			return nil, s.getError(d, err)
		}
		return r, nil
	}
	var data []byte
	if info.Chunks == 1 {
		m, err := s.stream.GetLastMsgForSubject(ctx, blobChunkPrefix+info.NUID)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, fmt.Errorf("%s in %s: %w: %w", d, BlobBucket, errChunkGone, oci.ErrBlobNotFound)
		}
		if err != nil {
			return nil, s.getError(d, err)
		}
		data = m.Data
	}
	if !oci.Matches(v1.Descriptor{Digest: d, Size: int64(info.Size)}, data) {
		return nil, fmt.Errorf("%w: %s in %s does not match its digest: put it again", oci.ErrStore, d, BlobBucket)
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

func (s *BlobStore) getError(d digest.Digest, err error) error {
	if errors.Is(err, jetstream.ErrObjectNotFound) || errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("%s in %s: %w", d, BlobBucket, oci.ErrBlobNotFound)
	}
	return fmt.Errorf("%w: get %s from %s: %w", oci.ErrStore, d, BlobBucket, err)
}
