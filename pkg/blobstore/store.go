package blobstore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Store is the JetStream Object Store as an oci.BlobStore: objects are
// named by digest, so storing the same blob twice stores it once, and any
// process on the bus can read what the builder wrote.
type Store struct {
	js     jetstream.JetStream
	obs    jetstream.ObjectStore
	stream jetstream.Stream // the bucket's stream, to read and write one-chunk objects directly
}

var _ oci.BlobStore = (*Store)(nil)

// Open opens the provisioned blob bucket.
func Open(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	obs, err := js.ObjectStore(ctx, events.BlobBucket)
	if err != nil {
		return nil, fmt.Errorf("open object store %s (is the bus provisioned?): %w", events.BlobBucket, err)
	}
	stream, err := js.Stream(ctx, blobStream)
	if err != nil {
		return nil, fmt.Errorf("open stream %s of object store %s (is the bus provisioned?): %w", blobStream, events.BlobBucket, err)
	}
	return &Store{js: js, obs: obs, stream: stream}, nil
}

// The Object Store's layout (NATS ADR-20): bucket B is the stream OBJ_B;
// an object's chunks are the messages on $O.B.C.<the object's NUID>, and
// its info (an ObjectInfo in JSON, its SHA-256 as "SHA-256=<base64url>")
// the last message on $O.B.M.<its name in base64url>.
const (
	blobStream      = "OBJ_" + events.BlobBucket
	blobChunkPrefix = "$O." + events.BlobBucket + ".C."
	blobMetaPrefix  = "$O." + events.BlobBucket + ".M."
)

func metaSubject(name string) string {
	return blobMetaPrefix + base64.URLEncoding.EncodeToString([]byte(name))
}

// blobChunkSize is the Object Store's own default chunk size: Put stores
// a blob up to this size itself, bigger ones through the Object Store.
const blobChunkSize = 128 << 10

// Put streams r into the store under desc's digest unless it is there already.
// It verifies what it read: a blob that does not match desc is not kept.
func (s *Store) Put(ctx context.Context, desc v1.Descriptor, r io.Reader) error {
	name := desc.Digest.String()
	cur, err := s.info(ctx, name)
	if err != nil {
		return s.putError(name, err)
	}
	if cur.seq != 0 && !cur.Deleted && cur.Size == uint64(desc.Size) {
		return nil
	}
	if desc.Size <= blobChunkSize && desc.Digest.Algorithm() == digest.SHA256 {
		return s.putSmall(ctx, desc, r, cur)
	}
	v := desc.Digest.Verifier()
	if _, err := s.obs.Put(ctx, jetstream.ObjectMeta{Name: name}, io.TeeReader(r, v)); err != nil {
		return s.putError(name, err)
	}
	if !v.Verified() {
		_ = s.obs.Delete(context.WithoutCancel(ctx), name)
		return fmt.Errorf("put %s: content does not match its digest", name)
	}
	return nil
}

func (s *Store) putError(name string, err error) error {
	return fmt.Errorf("%w: put %s into %s: %w", oci.ErrStore, name, events.BlobBucket, err)
}

// stored is an object's info as last written, and the sequence of that
// write in the bucket's stream (0: never written).
type stored struct {
	jetstream.ObjectInfo
	seq uint64
}

// info reads an object's info directly, as the Object Store's GetInfo
// does, and its sequence.
func (s *Store) info(ctx context.Context, name string) (stored, error) {
	m, err := s.stream.GetLastMsgForSubject(ctx, metaSubject(name))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return stored{}, nil
	}
	if err != nil {
		return stored{}, err
	}
	st := stored{seq: m.Sequence}
	if err := json.Unmarshal(m.Data, &st.ObjectInfo); err != nil {
		return stored{}, fmt.Errorf("the info of %s: %w", name, err)
	}
	return st, nil
}

// putSmall stores a blob of one chunk or none — read whole and checked
// before anything is written — with two publishes acknowledged together:
// its chunk, then its info. The Object Store's Put would read the info
// again and make and remove a reply subscription for the object: a third
// more time and work for the configs, manifests and signatures most blobs
// are.
//
// The info is written only over cur's (the stream checks the subject's
// last sequence): of two puts of the same new blob at once, the second to
// arrive leaves the first's in place and removes its own chunk.
func (s *Store) putSmall(ctx context.Context, desc v1.Descriptor, r io.Reader, cur stored) error {
	name := desc.Digest.String()
	data, err := io.ReadAll(io.LimitReader(r, desc.Size+1))
	if err != nil {
		return fmt.Errorf("put %s: read: %w", name, err)
	}
	if !oci.Matches(desc, data) {
		return fmt.Errorf("put %s: content does not match its digest", name)
	}
	sum, err := hex.DecodeString(desc.Digest.Encoded())
	if err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	info := jetstream.ObjectInfo{
		ObjectMeta: jetstream.ObjectMeta{Name: name, Opts: &jetstream.ObjectMetaOptions{ChunkSize: blobChunkSize}},
		Bucket:     events.BlobBucket, NUID: nuid.Next(), Size: uint64(len(data)), Chunks: uint32(min(len(data), 1)),
		Digest: "SHA-256=" + base64.URLEncoding.EncodeToString(sum),
	}
	meta := nats.NewMsg(metaSubject(name))
	meta.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	if meta.Data, err = json.Marshal(info); err != nil {
		return err
	}
	chunk := blobChunkPrefix + info.NUID
	var chunkAck jetstream.PubAckFuture
	if info.Chunks > 0 {
		if chunkAck, err = s.js.PublishMsgAsync(&nats.Msg{Subject: chunk, Data: data}); err != nil {
			return s.putError(name, err)
		}
	}
	infoAck, err := s.js.PublishMsgAsync(meta, jetstream.WithExpectLastSequencePerSubject(cur.seq))
	if err != nil {
		s.purge(ctx, chunk)
		return s.putError(name, err)
	}
	wctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	chunkErr, infoErr := acknowledged(wctx, chunkAck), acknowledged(wctx, infoAck)
	var refused *jetstream.APIError
	switch {
	case chunkErr == nil && infoErr == nil:
		if cur.seq != 0 && !cur.Deleted && cur.Chunks > 0 {
			s.purge(ctx, blobChunkPrefix+cur.NUID) // the replaced info's, as the Object Store's Put does
		}
		return nil
	case errors.As(infoErr, &refused):
		s.purge(ctx, chunk) // nothing names it
		if refused.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || refused.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant {
			return nil // stored meanwhile by another put, whose info stays
		}
	case infoErr == nil:
		s.purge(ctx, meta.Subject) // the info names a chunk that may not be there
	}
	// An info whose acknowledgement was lost may be stored: its chunk stays.
	return s.putError(name, errors.Join(chunkErr, infoErr))
}

// acknowledged waits for a publish's acknowledgement, if there is one.
func acknowledged(ctx context.Context, ack jetstream.PubAckFuture) error {
	if ack == nil {
		return nil
	}
	select {
	case <-ack.Ok():
		return nil
	case err := <-ack.Err():
		return err
	case <-ctx.Done():
		return fmt.Errorf("no acknowledgement from JetStream: %w", ctx.Err())
	}
}

// publishTimeout bounds the wait for an asynchronous publish's
// acknowledgement, as jetstream's own default bounds a synchronous one.
const publishTimeout = 5 * time.Second

// purge removes a subject's messages, after a put whatever its context.
func (s *Store) purge(ctx context.Context, subject string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
	defer cancel()
	_ = s.stream.Purge(ctx, jetstream.WithPurgeSubject(subject))
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
// A blob stored again by the Object Store's own Put (a large blob here,
// or another client) gets a new chunk and the old one is purged: a read
// between the info and the chunk finds the chunk gone. It reads the new
// info then, a few times.
func (s *Store) Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	for attempt := 1; ; attempt++ {
		rc, err := s.open(ctx, d)
		if !errors.Is(err, errChunkGone) || attempt == 5 {
			return rc, err
		}
	}
}

// errChunkGone: an object's info names a chunk the store no longer has.
var errChunkGone = errors.New("its chunk is gone (the blob was stored again meanwhile)")

func (s *Store) open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	info, err := s.info(ctx, d.String())
	if err != nil {
		return nil, s.getError(d, err)
	}
	if info.seq == 0 || info.Deleted {
		return nil, fmt.Errorf("%s in %s: %w", d, events.BlobBucket, oci.ErrBlobNotFound)
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
			return nil, fmt.Errorf("%s in %s: %w: %w", d, events.BlobBucket, errChunkGone, oci.ErrBlobNotFound)
		}
		if err != nil {
			return nil, s.getError(d, err)
		}
		data = m.Data
	}
	if !oci.Matches(v1.Descriptor{Digest: d, Size: int64(info.Size)}, data) {
		return nil, fmt.Errorf("%w: %s in %s does not match its digest: put it again", oci.ErrStore, d, events.BlobBucket)
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

func (s *Store) getError(d digest.Digest, err error) error {
	if errors.Is(err, jetstream.ErrObjectNotFound) || errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("%s in %s: %w", d, events.BlobBucket, oci.ErrBlobNotFound)
	}
	return fmt.Errorf("%w: get %s from %s: %w", oci.ErrStore, d, events.BlobBucket, err)
}
