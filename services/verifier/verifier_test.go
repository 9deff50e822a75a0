package verifier_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/registry/registrytest"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/services/verifier"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/uuid"
)

func client() *registry.Client {
	return registry.New(registry.WithKeychain(authn.NewMultiKeychain()), registry.WithRetries(1, time.Millisecond))
}

// pushed pushes a small image to target and publishes its push.completed,
// as the pusher does; it returns the run id and the graph.
func pushed(t *testing.T, srv *bustest.Server, target, content string) (string, oci.Graph) {
	t.Helper()
	g := push(t, target, content)
	return published(t, srv, target, g), g
}

// push pushes a small image to target.
func push(t *testing.T, target, content string) oci.Graph {
	t.Helper()
	return registrytest.Push(t, client(), target, content)
}

// published publishes the push.completed of g pushed to target.
func published(t *testing.T, srv *bustest.Server, target string, g oci.Graph) string {
	t.Helper()
	run := uuid.NewString()
	if _, err := bus.NewBus(srv.JetStream, "/digestline/test/pusher").Start(context.Background(), events.PushCompleted, run, "app", events.PushResult{
		Target: target, Digest: g.Root.Digest.String(), Graph: g, PromoteTo: "staging",
	}); err != nil {
		t.Fatal(err)
	}
	return run
}

// runVerifier runs a verifier with its defaults on a new NATS server,
// which it returns, until the test ends.
func runVerifier(t *testing.T) *bustest.Server {
	t.Helper()
	srv := bustest.NewServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- verifier.Run(ctx, verifier.Config{Deps: service.Deps{JetStream: srv.JetStream, Registry: client()}})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("verifier: %v", err)
		}
	})
	return srv
}

func TestVerifiesEveryByteAndTheTag(t *testing.T) {
	t.Parallel()
	addr, corrupting := registrytest.CorruptingProxy(t, registrytest.Memory(t, false))
	srv := runVerifier(t)

	run, g := pushed(t, srv, addr+"/team/app:1", "good")
	ok := bustest.Last[events.VerifyResult](t, srv.WaitRun(t, run, events.VerifyCompleted, events.VerifyFailed), events.VerifyCompleted)
	if ok.Digest != g.Root.Digest.String() || ok.Descriptors != 3 || ok.PromoteTo != "staging" ||
		!strings.Contains(strings.Join(ok.Checks, "\n"), "[VERIFY] digest match") || !strings.Contains(strings.Join(ok.Checks, "\n"), "[VERIFY] tag 1 points at the digest") {
		t.Fatalf("verify.completed %+v", ok)
	}

	// The tag moved after the push: drift, and the run fails as a conflict.
	first := push(t, addr+"/team/app:2", "first")
	push(t, addr+"/team/app:2", "second")
	run = published(t, srv, addr+"/team/app:2", first)
	evs := srv.WaitRun(t, run, events.VerifyCompleted, events.VerifyFailed)
	if f := bustest.Last[events.Failure](t, evs, events.VerifyFailed); f.Class != string(failure.Conflict) || f.Stage != "verify" {
		t.Fatalf("verify.failed %+v", f)
	}
	if d := bustest.Last[events.Drift](t, evs, events.DriftDetected); d.Tag != "2" {
		t.Fatalf("drift.detected %+v", d)
	}

	// The registry serves other bytes: integrity, with every blob named.
	corrupting.Store(true)
	run, _ = pushed(t, srv, addr+"/team/app:3", "tampered")
	f := bustest.Last[events.Failure](t, srv.WaitRun(t, run, events.VerifyCompleted, events.VerifyFailed), events.VerifyFailed)
	if f.Class != string(failure.Integrity) || len(f.Mismatches) != 2 || f.Path == "" || f.Hint == "" {
		t.Fatalf("verify.failed %+v", f)
	}
}

// The verifier pulls an image's blobs side by side (4 at a time unless
// told otherwise), not one after another: to a registry far away, each
// blob waited for would be a round trip more.
func TestPullsBlobsSideBySide(t *testing.T) {
	t.Parallel()
	backend := registrytest.Memory(t, false)
	// A registry that holds each blob read until a second one is being
	// read (or 5 s have passed), and counts how many it held at once.
	var (
		reading, most atomic.Int32
		second        = make(chan struct{})
		once          sync.Once
	)
	front := proxy(t, backend, func(r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			n := reading.Add(1)
			defer reading.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			if n >= 2 {
				once.Do(func() { close(second) })
			}
			select {
			case <-second:
			case <-time.After(5 * time.Second):
			}
		}
	})
	srv := runVerifier(t)

	g := push(t, backend+"/team/app:1", "two blobs: a config and a layer")
	run := published(t, srv, front+"/team/app:1", g)
	bustest.Last[events.VerifyResult](t, srv.WaitRun(t, run, events.VerifyCompleted, events.VerifyFailed), events.VerifyCompleted)
	if n := most.Load(); n < 2 {
		t.Errorf("the verifier read at most %d blob at a time, want its 2 side by side", n)
	}
}

// The tag is looked up while the digest is proven, not after: a registry
// that holds each blob read until the tag's HEAD arrives (or 5 s have
// passed).
func TestLooksUpTheTagWhileItProves(t *testing.T) {
	t.Parallel()
	backend := registrytest.Memory(t, false)
	var (
		looked = make(chan struct{})
		once   sync.Once
		beside atomic.Bool // a blob read saw the tag's HEAD arrive
	)
	front := proxy(t, backend, func(r *http.Request) {
		switch {
		case r.Method == http.MethodHead && strings.HasSuffix(r.URL.Path, "/manifests/1"):
			once.Do(func() { close(looked) })
		case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/"):
			select {
			case <-looked:
				beside.Store(true)
			case <-time.After(5 * time.Second):
			}
		}
	})
	srv := runVerifier(t)

	g := push(t, backend+"/team/app:1", "a tag looked up beside the proof")
	run := published(t, srv, front+"/team/app:1", g)
	got := bustest.Last[events.VerifyResult](t, srv.WaitRun(t, run, events.VerifyCompleted, events.VerifyFailed), events.VerifyCompleted)
	if !beside.Load() {
		t.Error("the verifier looked up the tag after it had read the blobs, not while")
	}
	if !slices.Contains(got.Checks, "[VERIFY] tag 1 points at the digest") {
		t.Errorf("checks %q: the tag's is missing", got.Checks)
	}
}

// proxy serves backend (host:port) behind before, which sees each request
// first (and may hold it), and returns its host:port.
func proxy(t *testing.T, backend string, before func(*http.Request)) string {
	t.Helper()
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: backend})
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		before(r)
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	return strings.TrimPrefix(front.URL, "http://")
}
