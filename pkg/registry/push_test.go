package registry_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/registry/registrytest"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/opencontainers/go-digest"
)

// fault decides, per request, whether to answer instead of the registry.
type fault func(r *http.Request) (status int, header http.Header, ok bool)

// newRegistry serves a real in-memory registry (go-containerregistry's, which
// shares blobs across repositories and has no referrers API), optionally
// behind faults, and returns its host:port.
func newRegistry(t testing.TB, faults ...fault) string {
	t.Helper()
	return serve(t, ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))), faults...)
}

// serve runs h behind faults on a test server and returns its host:port.
func serve(t testing.TB, h http.Handler, faults ...fault) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, f := range faults {
			if status, hdr, ok := f(r); ok {
				for k, v := range hdr {
					w.Header()[k] = v
				}
				w.WriteHeader(status)
				return
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// requireBasicAuth answers 401 to requests without user:pass.
func requireBasicAuth(user, pass string) fault {
	return func(r *http.Request) (int, http.Header, bool) {
		u, p, ok := r.BasicAuth()
		if ok && u == user && p == pass {
			return 0, nil, false
		}
		return http.StatusUnauthorized, http.Header{"Www-Authenticate": {`Basic realm="test"`}}, true
	}
}

// failTimes fails the first n requests that match with status.
func failTimes(n int32, status int, hdr http.Header, match func(*http.Request) bool) fault {
	var seen atomic.Int32
	return func(r *http.Request) (int, http.Header, bool) {
		if match(r) && seen.Add(1) <= n {
			return status, hdr, true
		}
		return 0, nil, false
	}
}

// buildImage builds a small image into a layout and returns its graph.
func buildImage(t testing.TB, content string) (oci.Graph, *oci.Layout) {
	t.Helper()
	return registrytest.Image(t, content)
}

// recorder collects stage reports.
type recorder struct {
	mu      sync.Mutex
	reports []events.StageReport
}

func (r *recorder) observe(_ context.Context, s events.StageReport) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reports = append(r.reports, s)
}

func (r *recorder) final() map[string]events.StageReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]events.StageReport{}
	for _, s := range r.reports {
		if s.Status != events.StatusRetrying {
			out[s.Stage] = s
		}
	}
	return out
}

func (r *recorder) count(status string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.reports {
		if s.Status == status {
			n++
		}
	}
	return n
}

func newClient(opts ...registry.Option) *registry.Client {
	return registry.New(append([]registry.Option{registry.WithKeychain(authn.NewMultiKeychain()), registry.WithRetries(3, time.Millisecond)}, opts...)...)
}

func TestPushColdThenWarm(t *testing.T) {
	t.Parallel()
	host := newRegistry(t)
	g, l := buildImage(t, "cold then warm")
	ref, _ := name.ParseReference(host + "/team/app:lab")
	ctx := context.Background()

	cold := &recorder{}
	res, err := newClient().Push(ctx, ref, g, l, cold.observe)
	if err != nil {
		t.Fatal(err)
	}
	if res.Uploaded != 2 || res.Digest != g.Root.Digest {
		t.Fatalf("cold push: %+v", res)
	}
	stages := []string{events.StageAuth, events.StageManifestCheck, events.StageBlobCheck, events.StageMount,
		events.StageUpload, events.StageManifestPublish, events.StageTagUpdate, events.StageReferrers}
	if len(cold.reports) != len(stages) {
		t.Fatalf("%d stage reports, want one per stage: %+v", len(cold.reports), cold.reports)
	}
	for i, s := range stages {
		if cold.reports[i].Stage != s {
			t.Errorf("stage %d is %q, want %q", i, cold.reports[i].Stage, s)
		}
	}
	if got := cold.final()[events.StageBlobCheck].Line; got != "[STAGE] blob check: 0/2 exists" {
		t.Errorf("blob check line %q", got)
	}
	// Anonymous: nothing was proven, and the line says so.
	if got, want := cold.final()[events.StageAuth].Line, "[STAGE] auth OK "+host+" anonymous"; got != want {
		t.Errorf("auth line %q, want %q", got, want)
	}

	// Pulled independently, by digest, the image is whole.
	img, err := remote.Image(ref.Context().Digest(g.Root.Digest.String()))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("validate.Image: %v", err)
	}

	// A warm push from a fresh client (a new process) to an anonymous
	// registry makes one request: the HEAD of the tag. No ping comes first.
	res, err = newClient().Push(ctx, ref, g, l, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Uploaded != 0 || res.Requests != 1 {
		t.Fatalf("warm push uploaded %d blobs in %d requests, want none in 1 (a HEAD of the tag)", res.Uploaded, res.Requests)
	}
}

func TestPushUploadsOnlyMissingBlobs(t *testing.T) {
	t.Parallel()
	host := newRegistry(t)
	ctx := context.Background()
	g, l := buildImage(t, "shared layer")
	first, _ := name.ParseReference(host + "/team/app:one")
	if _, err := newClient().Push(ctx, first, g, l, nil); err != nil {
		t.Fatal(err)
	}
	// Same layer, another config: one blob exists, one is new.
	p, _ := oci.ParsePlatform("linux/arm64")
	src := t.TempDir()
	_ = os.WriteFile(filepath.Join(src, "f.txt"), []byte("shared layer"), 0o644)
	g2, err := oci.BuildImage(ctx, src, oci.ImageConfig{Cmd: []string{"/f.txt"}, Platform: p}, l)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	second, _ := name.ParseReference(host + "/team/app:two")
	res, err := newClient().Push(ctx, second, g2, l, rec.observe)
	if err != nil {
		t.Fatal(err)
	}
	if res.Uploaded != 1 || res.Existing != 1 {
		t.Fatalf("uploaded %d, existing %d; want 1 and 1", res.Uploaded, res.Existing)
	}
	if got := rec.final()[events.StageBlobCheck].Line; got != "[STAGE] blob check: 1/2 exists" {
		t.Errorf("blob check line %q", got)
	}
}

func TestPushClassifiesFailures(t *testing.T) {
	t.Parallel()
	g, l := buildImage(t, "failures")
	layer := g.Blobs()[1].Digest.String()
	// Faults aimed at one blob's upload make the retry count deterministic.
	isLayerUpload := func(r *http.Request) bool { return registrytest.CarriesBlob(r) && r.URL.Query().Get("digest") == layer }
	cases := map[string]struct {
		faults    []fault
		opts      []registry.Option
		class     failure.Class
		stage     string
		retries   int
		succeeds  bool
		hintNames string
	}{
		"wrong credentials are auth, not retried": {
			faults: []fault{requireBasicAuth("ci", "right")},
			opts:   []registry.Option{registry.WithAuth(&authn.Basic{Username: "ci", Password: "wrong"})},
			class:  failure.Auth, stage: events.StageAuth, hintNames: "credentials",
		},
		"forbidden upload is auth": {
			faults: []fault{failTimes(99, http.StatusForbidden, nil, registrytest.CarriesBlob)},
			class:  failure.Auth, stage: events.StageUpload, hintNames: "scope",
		},
		"server errors are retried then succeed": {
			faults:  []fault{failTimes(2, http.StatusBadGateway, nil, isLayerUpload)},
			retries: 2, succeeds: true,
		},
		"rate limit honours Retry-After and succeeds": {
			faults:  []fault{failTimes(1, http.StatusTooManyRequests, http.Header{"Retry-After": {"0"}}, isLayerUpload)},
			retries: 1, succeeds: true,
		},
		"persistent server errors fail as transport": {
			faults: []fault{failTimes(99, http.StatusServiceUnavailable, nil, isLayerUpload)},
			class:  failure.Transport, stage: events.StageUpload, retries: 3,
			hintNames: "registry",
		},
		"refused manifest is schema": {
			faults: []fault{failTimes(99, http.StatusBadRequest, nil, func(r *http.Request) bool {
				return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/")
			})},
			class: failure.Schema, stage: events.StageManifestPublish, hintNames: "media type",
		},
	}
	for label, tc := range cases {
		t.Run(label, func(t *testing.T) {
			t.Parallel()
			host := newRegistry(t, tc.faults...)
			ref, _ := name.ParseReference(host + "/team/app:lab")
			rec := &recorder{}
			_, err := newClient(tc.opts...).Push(context.Background(), ref, g, l, rec.observe)
			if got := rec.count(events.StatusRetrying); got != tc.retries {
				t.Errorf("%d retries, want %d", got, tc.retries)
			}
			if tc.succeeds {
				if err != nil {
					t.Fatalf("push failed: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.class) {
				t.Fatalf("err = %v, want class %s", err, tc.class)
			}
			var rerr *failure.Error
			if !errors.As(err, &rerr) || rerr.Stage != tc.stage {
				t.Fatalf("err = %#v, want stage %q", err, tc.stage)
			}
			if !strings.Contains(rerr.Hint, tc.hintNames) {
				t.Errorf("hint %q does not mention %q", rerr.Hint, tc.hintNames)
			}
			if f := rec.final()[tc.stage]; f.Status != events.StatusFailed || !strings.Contains(f.Line, "FAILED ("+string(tc.class)+")") {
				t.Errorf("failed stage line %q", f.Line)
			}
		})
	}
}

func TestPushNeverLeaksCredentials(t *testing.T) {
	t.Parallel()
	host := newRegistry(t, requireBasicAuth("ci", "s3cret-token"))
	g, l := buildImage(t, "secrets")
	ref, _ := name.ParseReference(host + "/team/app:lab")
	rec := &recorder{}
	_, err := newClient(registry.WithAuth(&authn.Basic{Username: "ci", Password: "wrong-s3cret"})).Push(context.Background(), ref, g, l, rec.observe)
	if err == nil {
		t.Fatal("push with a wrong password succeeded")
	}
	text := err.Error()
	for _, r := range rec.reports {
		text += r.Line
	}
	if strings.Contains(text, "s3cret") {
		t.Fatalf("a secret leaked: %s", text)
	}
}

// TestATagMovesOnlyOntoWhatIsProven: with a proof, the verify stage runs
// after the referrers and before the tag update, on what is already in the
// registry; a proof that fails fails the push as its own stage, and the tag
// stays where it was.
func TestATagMovesOnlyOntoWhatIsProven(t *testing.T) {
	t.Parallel()
	host := newRegistry(t)
	ctx := context.Background()
	ref, _ := name.NewTag(host + "/team/app:prod")
	old := registrytest.Push(t, newClient(), ref.String(), "what prod runs")
	g, l := buildImage(t, "proven first")

	refused := &recorder{}
	_, err := newClient().Push(ctx, ref, g, l, refused.observe, registry.VerifyBeforeTag(registry.ProofFunc(func(ctx context.Context) (string, error) {
		if _, err := remote.Image(ref.Context().Digest(g.Root.Digest.String())); err != nil {
			t.Errorf("the proof runs before the image is there: %v", err)
		}
		return "", &failure.Error{Class: failure.Integrity, Err: errors.New("layer 1 hashes to something else"), Hint: "find what altered it"}
	})))
	var e *failure.Error
	if !errors.As(err, &e) || e.Class != failure.Integrity || e.Stage != events.StageVerify {
		t.Fatalf("a failed proof: %v, want an integrity failure at the verify stage", err)
	}
	if d, err := remote.Head(ref); err != nil || d.Digest.String() != old.Root.Digest.String() {
		t.Fatalf("the tag moved onto what was not proven: %v %v", d, err)
	}
	if last := refused.reports[len(refused.reports)-1]; last.Stage != events.StageVerify || last.Status != events.StatusFailed {
		t.Errorf("the last stage reported is %s %s, want verify failed", last.Stage, last.Status)
	}

	proven := &recorder{}
	if _, err := newClient().Push(ctx, ref, g, l, proven.observe, registry.VerifyBeforeTag(registry.ProofFunc(func(context.Context) (string, error) {
		return "3 descriptors proven", nil
	}))); err != nil {
		t.Fatal(err)
	}
	var stages []string
	for _, r := range proven.reports {
		stages = append(stages, r.Stage)
	}
	want := []string{events.StageAuth, events.StageManifestCheck, events.StageBlobCheck, events.StageMount, events.StageUpload,
		events.StageManifestPublish, events.StageReferrers, events.StageVerify, events.StageTagUpdate}
	if !slices.Equal(stages, want) {
		t.Fatalf("stages %v, want %v", stages, want)
	}
	if got := proven.final()[events.StageVerify].Line; !strings.Contains(got, "3 descriptors proven") {
		t.Errorf("verify line %q does not say what was proven", got)
	}
	if d, err := remote.Head(ref); err != nil || d.Digest.String() != g.Root.Digest.String() {
		t.Fatalf("the tag did not move onto what was proven: %v %v", d, err)
	}
}

// TestACopyWithinARegistryMountsEverything: an image copied to another
// repository of the registry that holds it (a promotion between two places
// of one registry) has every blob mounted, its config too, and nothing
// uploaded; from another registry, MountFrom offers nothing.
func TestACopyWithinARegistryMountsEverything(t *testing.T) {
	t.Parallel()
	host, other := newOlareg(t), newOlareg(t) // blobs per repository
	ctx := context.Background()
	c := newClient()
	g := registrytest.Push(t, c, host+"/team/app:1", "mounted, not sent")
	from, _ := name.NewRepository(host + "/team/app")
	repo, err := c.Open(ctx, from, false)
	if err != nil {
		t.Fatal(err)
	}
	read, src, err := repo.Graph(ctx, g.Root.Digest, false)
	if err != nil {
		t.Fatal(err)
	}
	to, _ := name.ParseReference(host + "/prod/app:prod")
	res, err := c.Push(ctx, to, read, src, nil, registry.MountFrom(from))
	if err != nil {
		t.Fatal(err)
	}
	if res.Mounted != len(g.Blobs()) || res.Uploaded != 0 {
		t.Fatalf("copied within the registry: %d mounted, %d uploaded; want all %d mounted", res.Mounted, res.Uploaded, len(g.Blobs()))
	}
	elsewhere, _ := name.ParseReference(other + "/prod/app:prod")
	if res, err = c.Push(ctx, elsewhere, read, src, nil, registry.MountFrom(from)); err != nil || res.Mounted != 0 || res.Uploaded != len(g.Blobs()) {
		t.Fatalf("copied to another registry: %+v %v", res, err)
	}
}

// countingSource counts how often each blob is opened.
type countingSource struct {
	oci.BlobReader
	mu    sync.Mutex
	opens map[digest.Digest]int
}

func (s *countingSource) Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	s.mu.Lock()
	s.opens[d]++
	s.mu.Unlock()
	return s.BlobReader.Open(ctx, d)
}

// A push reads its manifest from its source once, though the bases'
// lookup, the publish and the tag all use it.
func TestAPushReadsItsManifestFromItsSourceOnce(t *testing.T) {
	t.Parallel()
	g, l := buildImage(t, "read once")
	src := &countingSource{BlobReader: l, opens: map[digest.Digest]int{}}
	ref, _ := name.ParseReference(newRegistry(t) + "/team/app:1")
	if _, err := newClient().Push(context.Background(), ref, g, src, nil); err != nil {
		t.Fatal(err)
	}
	if n := src.opens[g.Root.Digest]; n != 1 {
		t.Errorf("the push read its manifest from its source %d times, want once", n)
	}
}

// TestPushWaitsOutARegistryRestart: a registry that answers 503 for 3
// seconds (restarting behind its proxy) is waited out by the default
// retries, instead of failing every run pushing to it.
func TestPushWaitsOutARegistryRestart(t *testing.T) {
	t.Parallel()
	up := time.Now().Add(3 * time.Second)
	host := newRegistry(t, func(*http.Request) (int, http.Header, bool) {
		return http.StatusServiceUnavailable, nil, time.Now().Before(up)
	})
	g, l := buildImage(t, "restart")
	ref, _ := name.ParseReference(host + "/team/app:restart")
	rec := &recorder{}
	res, err := registry.New(registry.WithKeychain(authn.NewMultiKeychain())).Push(context.Background(), ref, g, l, rec.observe)
	if err != nil {
		t.Fatalf("push through a 3 s restart: %v", err)
	}
	check := rec.final()[events.StageManifestCheck]
	if res.Digest != g.Root.Digest || check.Attempt < 2 {
		t.Fatalf("push through a restart: %+v, manifest check %+v", res, check)
	}
	// The stage's duration holds the waits before its retries (the first
	// alone is half a second or more); its last attempt's does not.
	if check.DurationMS-check.AttemptMS < 500 {
		t.Errorf("the manifest check took %d ms in all and %d ms in its last attempt: its waits are not in the first, or are in the second", check.DurationMS, check.AttemptMS)
	}
}

// A registry whose TLS certificate this machine does not trust, or that
// answers HTTPS in plain HTTP, fails the push at once, not after the
// retries' seconds, with a hint that says which and what to do.
func TestPushToARegistryTLSRefusesFailsAtOnceSayingWhy(t *testing.T) {
	t.Parallel()
	h := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	untrusted, plain := httptest.NewTLSServer(h), httptest.NewServer(h)
	t.Cleanup(untrusted.Close)
	t.Cleanup(plain.Close)
	g, l := buildImage(t, "tls")
	for host, tc := range map[string]struct {
		addr, hint string
	}{
		"untrusted.test": {untrusted.Listener.Addr().String(), "does not trust the TLS certificate of the registry untrusted.test"},
		"plain.test":     {plain.Listener.Addr().String(), "speaks plain HTTP: if it is meant to"},
	} {
		t.Run(host, func(t *testing.T) {
			t.Parallel()
			// The registry's name is not a local one, so it is spoken to over
			// HTTPS; its connections go to the test server.
			rt := http.DefaultTransport.(*http.Transport).Clone()
			rt.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, tc.addr)
			}
			ref, _ := name.ParseReference(host + "/team/app:tls")
			rec := &recorder{}
			_, err := registry.New(registry.WithTransport(rt), registry.WithKeychain(authn.NewMultiKeychain())).Push(context.Background(), ref, g, l, rec.observe)
			var e *failure.Error
			if !errors.As(err, &e) || e.Class != failure.Transport || !strings.Contains(e.Hint, tc.hint) || e.Temporary() {
				t.Fatalf("push: %v (%+v), want a final transport failure with a hint saying %q", err, e, tc.hint)
			}
			if check := rec.final()[events.StageManifestCheck]; check.Attempt != 1 || check.Status != events.StatusFailed {
				t.Errorf("the manifest check ended %s at attempt %d: it was retried", check.Status, check.Attempt)
			}
		})
	}
}
