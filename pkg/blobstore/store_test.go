package blobstore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/digestline/digestline/pkg/blobstore"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

func TestTheBlobStoreGivesBackEachBlobAsStored(t *testing.T) {
	t.Parallel()
	srv, store := blobStore(t)
	ctx := context.Background()
	obs := objectStore(t, srv)
	// In this order, and the Object Store's own reads last: a read through
	// a consumer deletes it once done, which the server may count as the
	// next read's request.
	blobs := []struct {
		name    string
		content []byte
	}{
		{"empty", []byte{}},
		{"one chunk", []byte(`{"architecture":"amd64","os":"linux"}`)},
		{"many chunks", bytes.Repeat([]byte("layer "), 100_000)}, // 600 kB: five chunks of 128 KiB
	}
	for _, b := range blobs {
		name, content := b.name, b.content
		desc := v1.Descriptor{Digest: digest.FromBytes(content), Size: int64(len(content))}
		if err := store.Put(ctx, desc, bytes.NewReader(content)); err != nil {
			t.Fatalf("%s: put: %v", name, err)
		}
		before := apiRequests(t, srv)
		rc, err := store.Open(ctx, desc.Digest)
		if err != nil {
			t.Fatalf("%s: open: %v", name, err)
		}
		got, err := io.ReadAll(rc)
		_ = rc.Close()
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("%s: read %d bytes (%v), want the %d stored", name, len(got), err, len(content))
		}
		// A blob of one chunk is read with direct gets, which are no
		// JetStream API requests: no consumer is made and deleted for it.
		if made := apiRequests(t, srv) - before; (len(content) <= 128<<10) != (made == 0) {
			t.Errorf("%s: reading it took %d JetStream API requests", name, made)
		}
	}
	// Written as the Object Store writes: its own client reads each.
	for _, b := range blobs {
		if got, err := obs.GetBytes(ctx, digest.FromBytes(b.content).String()); err != nil || !bytes.Equal(got, b.content) {
			t.Errorf("%s: the Object Store read %d bytes (%v), want the %d stored", b.name, len(got), err, len(b.content))
		}
	}

	missing := digest.FromString("never stored")
	if _, err := store.Open(ctx, missing); !errors.Is(err, oci.ErrBlobNotFound) {
		t.Errorf("open of a blob never stored: %v, want ErrBlobNotFound", err)
	}
	lie := v1.Descriptor{Digest: digest.FromString("other bytes"), Size: 5}
	if err := store.Put(ctx, lie, strings.NewReader("bytes")); err == nil {
		t.Error("a blob that does not match its digest was stored")
	}
	if _, err := store.Open(ctx, lie.Digest); !errors.Is(err, oci.ErrBlobNotFound) {
		t.Errorf("open of the refused blob: %v, want ErrBlobNotFound", err)
	}
}

// blobStore starts a NATS server with the bus provisioned and opens its
// blob store.
func blobStore(t *testing.T) (*bustest.Server, *blobstore.Store) {
	t.Helper()
	srv := bustest.NewServer(t)
	store, err := blobstore.Open(context.Background(), srv.JetStream)
	if err != nil {
		t.Fatal(err)
	}
	return srv, store
}

// objectStore opens the blob bucket as NATS's own Object Store client does.
func objectStore(t *testing.T, srv *bustest.Server) jetstream.ObjectStore {
	t.Helper()
	obs, err := srv.JetStream.ObjectStore(context.Background(), events.BlobBucket)
	if err != nil {
		t.Fatal(err)
	}
	return obs
}

// apiRequests counts the JetStream API requests the server has answered.
func apiRequests(t *testing.T, srv *bustest.Server) uint64 {
	t.Helper()
	jsz, err := srv.NATS.Jsz(&server.JSzOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return jsz.API.Total
}

// Builds that make the same new blob at once store it once: one chunk
// and one info are left, whoever came first.
func TestABlobPutManyTimesAtOnceIsStoredOnce(t *testing.T) {
	t.Parallel()
	srv, store := blobStore(t)
	ctx := context.Background()
	content := []byte(`{"critical":{"type":"cosign container image signature"}}`)
	desc := v1.Descriptor{Digest: digest.FromBytes(content), Size: int64(len(content))}
	var g errgroup.Group
	for range 8 {
		g.Go(func() error { return store.Put(ctx, desc, bytes.NewReader(content)) })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	stream, err := srv.JetStream.Stream(ctx, "OBJ_"+events.BlobBucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter("$O."+events.BlobBucket+".>"))
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Errorf("the stream holds %d messages for the blob (%v), want its chunk and its info", info.State.Msgs, info.State.Subjects)
	}
	rc, err := store.Open(ctx, desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if got, _ := io.ReadAll(rc); !bytes.Equal(got, content) {
		t.Fatalf("read %q", got)
	}
}

// A blob stored again by another client of the Object Store gets a new
// chunk and its old one is purged. A reader between the two (a pusher)
// still reads the blob.
func TestABlobStoredAgainMeanwhileIsStillRead(t *testing.T) {
	t.Parallel()
	srv, store := blobStore(t)
	ctx := context.Background()
	obs := objectStore(t, srv)
	content := []byte("{}")
	desc := v1.Descriptor{Digest: digest.FromBytes(content), Size: int64(len(content))}
	if err := store.Put(ctx, desc, bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	const rounds = 300
	done := make(chan error, 1)
	go func() {
		for range rounds {
			// New chunk, new info, the old chunk purged.
			if _, err := obs.PutBytes(ctx, desc.Digest.String(), content); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i := range rounds {
		rc, err := store.Open(ctx, desc.Digest)
		if err != nil {
			t.Fatalf("open %d, while the blob is stored again: %v", i, err)
		}
		if got, _ := io.ReadAll(rc); !bytes.Equal(got, content) {
			t.Fatalf("open %d read %q", i, got)
		}
		_ = rc.Close()
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
