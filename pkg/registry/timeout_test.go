package registry_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/registry/registrytest"
	"github.com/digestline/digestline/pkg/registry/transport"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestASilentRegistryEndsAsATransportFailureByItself: a registry that
// accepts the connection and never answers fails the push at its first
// request (the manifest check: an anonymous push asks nothing before), as
// transport, naming the registry and the timeout — after the
// stage's retries, without anyone cancelling it.
func TestASilentRegistryEndsAsATransportFailureByItself(t *testing.T) {
	t.Parallel()
	addr := registrytest.Silent(t)
	g, l := buildImage(t, "silent")
	c := registry.New(registry.WithKeychain(authn.NewMultiKeychain()), registry.WithTimeout(200*time.Millisecond), registry.WithRetries(1, time.Millisecond))
	start := time.Now()
	_, err := c.Push(context.Background(), mustRef(t, addr+"/team/app:1"), g, l, nil)
	took := time.Since(start)
	var e *failure.Error
	if !errors.As(err, &e) || e.Class != failure.Transport || e.Stage != events.StageManifestCheck {
		t.Fatalf("push to a silent registry = %v, want a transport failure at manifest check", err)
	}
	if !strings.Contains(e.Hint, addr) || !strings.Contains(e.Hint, "200ms") || !strings.Contains(e.Hint, "DIGESTLINE_REGISTRY_TIMEOUT") {
		t.Errorf("hint %q does not name the registry, the timeout and its setting", e.Hint)
	}
	if e.Temporary() {
		t.Error("the stage's retries ran out, yet the failure says trying again at once may help")
	}
	if took > 10*time.Second {
		t.Errorf("gave up after %s", took)
	}
}

// TestWaitBoundsTheRetriesOfASilentRegistry: with WithWait, a stage
// stops retrying once another attempt could end past the wait, however
// many retries are left, and the hint says which setting to change; every
// request left unanswered is told of, with its registry and stage.
func TestWaitBoundsTheRetriesOfASilentRegistry(t *testing.T) {
	t.Parallel()
	addr := registrytest.Silent(t)
	g, l := buildImage(t, "silent wait")
	var mu sync.Mutex
	var waits []transport.Wait
	c := registry.New(registry.WithKeychain(authn.NewMultiKeychain()), registry.WithTimeout(300*time.Millisecond), registry.WithRetries(20, time.Millisecond),
		registry.WithWait(time.Second))
	start := time.Now()
	_, err := c.Push(context.Background(), mustRef(t, addr+"/team/app:1"), g, l, nil)
	took := time.Since(start)
	var e *failure.Error
	if !errors.As(err, &e) || e.Class != failure.Transport || !strings.Contains(e.Hint, "DIGESTLINE_REGISTRY_WAIT") {
		t.Fatalf("push = %v, want a transport failure whose hint names DIGESTLINE_REGISTRY_WAIT", err)
	}
	if took > 2*time.Second { // 20 retries of 300ms would take over 6s
		t.Errorf("gave up after %s, want about the 1s wait", took)
	}

	// The notice, with a request left waiting longer than it waits to tell.
	c = registry.New(registry.WithKeychain(authn.NewMultiKeychain()), registry.WithTimeout(4*time.Second), registry.WithRetries(0, time.Millisecond),
		registry.WithWaitNotice(func(w transport.Wait) { mu.Lock(); waits = append(waits, w); mu.Unlock() }))
	if _, err := c.Push(context.Background(), mustRef(t, addr+"/team/app:1"), g, l, nil); err == nil {
		t.Fatal("a push to a silent registry passed")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(waits) == 0 || waits[0].Host != addr || waits[0].Stage != events.StageManifestCheck || waits[0].Waited < 3*time.Second {
		t.Errorf("notices %+v, want one for %s in the manifest check after 3s", waits, addr)
	}
}

// TestARegistryThatStopsMidBodyFailsTheRead: the registry sends the
// headers and part of a blob, then nothing: the read fails after the
// timeout instead of waiting forever; and one that stops reading an upload
// fails it the same way.
func TestARegistryThatStopsMidBodyFailsTheRead(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/"):
			w.Header().Set("Content-Length", "1048576")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(make([]byte, 1000))
			w.(http.Flusher).Flush()
		case r.Method == http.MethodPost:
			w.Header().Set("Location", "/v2/team/app/blobs/uploads/1")
			w.WriteHeader(http.StatusAccepted)
			return
		case r.Method == http.MethodPut: // reads nothing of the body
		default:
			w.WriteHeader(http.StatusOK)
			return
		}
		select {
		case <-r.Context().Done(): // the client gave up and closed the connection
		case <-release:
		}
	}))
	t.Cleanup(func() { close(release) }) // before the server's Close, which waits for handlers
	c := registry.New(registry.WithKeychain(authn.NewMultiKeychain()), registry.WithTimeout(300*time.Millisecond))
	repo, err := c.Open(context.Background(), mustRef(t, addr+"/team/app:1").Context(), true)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := repo.Open(context.Background(), digest.FromString("x"))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	start := time.Now()
	n, err := io.Copy(io.Discard, rc)
	if err == nil || n != 1000 || time.Since(start) > 5*time.Second {
		t.Fatalf("read %d bytes, %v after %s: want a timeout after the first 1000", n, err, time.Since(start))
	}

	// 64 MiB fills any socket buffer: the upload must stall, then fail.
	size := int64(64 << 20)
	err = repo.UploadBlob(context.Background(), descriptorOf(size), io.LimitReader(zeros{}, size))
	if e := failure.As(err); e.Class != failure.Transport || !strings.Contains(e.Hint, "300ms") {
		t.Fatalf("a stalled upload = %v (hint %q)", err, e.Hint)
	}
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// descriptorOf describes size zero bytes (the digest is not checked by a
// registry that never reads them).
func descriptorOf(size int64) v1.Descriptor {
	return v1.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromString("zeros"), Size: size}
}

func mustRef(t testing.TB, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}
