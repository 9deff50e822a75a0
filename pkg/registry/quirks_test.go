package registry_test

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/registry/registrytest"
	"github.com/google/go-containerregistry/pkg/name"
)

// TestPushAndDiscoverThroughRegistryQuirks pushes an image with an SBOM
// (cold, then warm), reads its manifest back by digest and lists its
// referrers through a proxy that behaves as registries in the field do
// (docs/registries.md).
func TestPushAndDiscoverThroughRegistryQuirks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		quirk    registrytest.Quirk
		registry func(*testing.T) string
		// readBack is the class reading the manifest by digest fails with ("" for none).
		readBack failure.Class
	}{
		{registrytest.NoDigestHeader, func(t *testing.T) string { return newOlareg(t) }, ""},
		{registrytest.WrongDigestHeader, func(t *testing.T) string { return newOlareg(t) }, failure.Integrity},
		{registrytest.HTMLReferrers, func(t *testing.T) string { return newRegistry(t) }, ""},
		{registrytest.RedirectReferrers, func(t *testing.T) string { return newRegistry(t) }, ""},
		{registrytest.NotIndexReferrers, func(t *testing.T) string { return newRegistry(t) }, ""},
	} {
		t.Run(string(tc.quirk), func(t *testing.T) {
			t.Parallel()
			host := registrytest.Proxy(t, tc.registry(t), tc.quirk)
			g, l := imageWithSBOM(t)
			ref, _ := name.ParseReference(host + "/team/app:1")
			ctx := context.Background()
			client := newClient()
			if _, err := client.Push(ctx, ref, g, l, nil); err != nil {
				t.Fatalf("cold push: %v", err)
			}
			repo, err := client.Open(ctx, ref.Context(), false)
			if err != nil {
				t.Fatal(err)
			}
			_, desc, err := repo.GetManifest(ctx, g.Root.Digest.String())
			if tc.readBack != "" {
				if !errors.Is(err, tc.readBack) {
					t.Fatalf("read back = %v, want %s", err, tc.readBack)
				}
				return
			}
			if err != nil || desc.Digest != g.Root.Digest {
				t.Fatalf("read back: %v %s", err, desc.Digest)
			}
			rec := &recorder{}
			res, err := client.Push(ctx, ref, g, l, rec.observe)
			if err != nil || res.Uploaded != 0 {
				t.Fatalf("warm push: %v, %d uploaded", err, res.Uploaded)
			}
			if s := rec.final()[events.StageManifestCheck]; s.Status != events.StatusOK {
				t.Fatalf("warm manifest check: %+v", s)
			}
			refs, err := repo.Referrers(ctx, g.Root.Digest)
			if err != nil || len(refs) != 1 || refs[0].Digest != g.Referrers[0].Root.Digest || refs[0].ArtifactType != oci.MediaTypeSPDX {
				t.Fatalf("referrers: %+v %v", refs, err)
			}
		})
	}
}

// TestRegistryRefusalsHaveTheirClassAndAPreciseHint: what registries in the
// field refuse, each with the class and hint a person acts on (a policy's
// 412 is not tag drift; a missing repository is not a broken network).
func TestRegistryRefusalsHaveTheirClassAndAPreciseHint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		quirk      registrytest.Quirk
		pushTwice  bool // the refusal comes on the second push (a tag that exists)
		withSBOM   bool
		stage      string
		class      failure.Class
		hintNames  string
		succeeds   bool
		retryNamed string
	}{
		{quirk: registrytest.NoCreateOnPush, stage: events.StageUpload, class: failure.NotFound, hintNames: "create it first"},
		{quirk: registrytest.ImmutableTags, pushTwice: true, stage: events.StageTagUpdate, class: failure.Conflict, hintNames: "immutable"},
		{quirk: registrytest.PolicyRefusal, stage: events.StageTagUpdate, class: failure.Auth, hintNames: "policy"},
		{quirk: registrytest.RefusesArtifacts, withSBOM: true, stage: events.StageReferrers, class: failure.Schema, hintNames: "artifact type"},
		{quirk: registrytest.DigestForFallbackTag, withSBOM: true, stage: events.StageReferrers, class: failure.Schema, hintNames: "fallback tag"},
		{quirk: registrytest.Throttles, succeeds: true},
	} {
		t.Run(string(tc.quirk), func(t *testing.T) {
			t.Parallel()
			host := registrytest.Proxy(t, newRegistry(t), tc.quirk)
			g, l := buildImage(t, "refused")
			if tc.withSBOM {
				g, l = imageWithSBOM(t)
			}
			ctx := context.Background()
			client := newClient()
			if tc.pushTwice {
				firstG, firstL := buildImage(t, "the tag's first image")
				if _, err := client.Push(ctx, mustRef(t, host+"/team/app:1"), firstG, firstL, nil); err != nil {
					t.Fatal(err)
				}
			}
			rec := &recorder{}
			_, err := client.Push(ctx, mustRef(t, host+"/team/app:1"), g, l, rec.observe)
			if tc.succeeds {
				if err != nil || rec.count(events.StatusRetrying) != 1 {
					t.Fatalf("push = %v after %d retries, want success after one", err, rec.count(events.StatusRetrying))
				}
				return
			}
			var e *failure.Error
			if !errors.As(err, &e) || e.Class != tc.class || e.Stage != tc.stage || !strings.Contains(e.Hint, tc.hintNames) {
				t.Fatalf("push = %v (hint %q), want %s at %s with a hint naming %q", err, hintOf(e), tc.class, tc.stage, tc.hintNames)
			}
			if e.Temporary() {
				t.Error("a refusal is retried")
			}
		})
	}
}

// TestAFallbackTagThatIsTheSubjectIsNoReferrersList: on a registry that
// reads sha256-<hex> as the digest (GitLab), the fallback tag of a
// multi-platform index is the index itself; its platforms are not its
// referrers.
func TestAFallbackTagThatIsTheSubjectIsNoReferrersList(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	index, l := multiPlatformIndex(t)
	host := registrytest.Proxy(t, newRegistry(t), registrytest.DigestForFallbackTag)
	client := newClient()
	if _, err := client.Push(ctx, mustRef(t, host+"/team/multi:1"), index, l, nil); err != nil {
		t.Fatal(err)
	}
	repo, err := client.Open(ctx, mustRef(t, host+"/team/multi:1").Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	if refs, err := repo.Referrers(ctx, index.Root.Digest); err != nil || len(refs) != 0 {
		t.Fatalf("referrers of the index: %+v, %v; want none", refs, err)
	}
}

func hintOf(e *failure.Error) string {
	if e == nil {
		return ""
	}
	return e.Hint
}

// TestARegistryThatRefusesChunksGetsStreamedUploads: a client that would
// upload big blobs in chunks meets a registry that takes none: the push
// goes through in one streamed upload per blob, and the client sends that
// registry no chunk again.
func TestARegistryThatRefusesChunksGetsStreamedUploads(t *testing.T) {
	t.Parallel()
	var patches atomic.Int32
	countPatches := func(r *http.Request) (int, http.Header, bool) {
		if r.Method == http.MethodPatch {
			patches.Add(1)
		}
		return 0, nil, false
	}
	refusing := registrytest.Proxy(t, newRegistry(t), registrytest.NoChunkedUploads)
	host := serve(t, httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: refusing}), countPatches)
	client := newClient(registry.WithChunking(256<<10, 64<<10))
	for i, content := range []string{"first", "second"} {
		g, l := bigImage(t, content, 1<<20)
		rec := &recorder{}
		res, err := client.Push(context.Background(), mustRef(t, host+"/team/big:"+content), g, l, rec.observe)
		if err != nil || res.Uploaded != 2 {
			t.Fatalf("push %d: %v, %d uploaded", i+1, err, res.Uploaded)
		}
		if rec.count(events.StatusRetrying) != 0 {
			t.Errorf("push %d retried a stage: the fallback belongs inside the upload", i+1)
		}
	}
	if n := patches.Load(); n != 1 {
		t.Fatalf("%d chunks sent, want the one refused: after it, no chunk goes to that registry", n)
	}
}

// TestBigBlobsGoInChunksOnlyWhereChunksWork: a client told nothing about
// chunks probes a registry the first time it has a big blob for it, once:
// a registry that takes chunks gets the blob in resumable chunks; one that
// refuses them gets it streamed, with the probe's one-byte chunk the only
// chunk it ever sees.
func TestBigBlobsGoInChunksOnlyWhereChunksWork(t *testing.T) {
	t.Parallel()
	g, l := bigImage(t, "chunks or not", 65<<20)
	for _, tc := range []struct {
		quirk         registrytest.Quirk
		first, second int32 // chunks seen by the registry at each push
	}{
		{"", 1 + 5, 5}, // the probe's, then 65 MiB in 16 MiB chunks; then no probe
		{registrytest.NoChunkedUploads, 1, 0},
	} {
		t.Run(string(cmp.Or(tc.quirk, "takes chunks")), func(t *testing.T) {
			t.Parallel()
			var chunks atomic.Int32
			countChunks := func(r *http.Request) (int, http.Header, bool) {
				if r.Method == http.MethodPatch && r.Header.Get("Content-Range") != "" {
					chunks.Add(1)
				}
				return 0, nil, false
			}
			target := registrytest.Distribution(t, registrytest.DockerRegistry) // blobs per repository: each push uploads
			if tc.quirk != "" {
				target = registrytest.Proxy(t, target, tc.quirk)
			}
			host := serve(t, httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target}), countChunks)
			client := newClient()
			for i, want := range []int32{tc.first, tc.second} {
				chunks.Store(0)
				if _, err := client.Push(context.Background(), mustRef(t, fmt.Sprintf("%s/team/big%d:1", host, i)), g, l, nil); err != nil {
					t.Fatal(err)
				}
				if n := chunks.Load(); n != want {
					t.Fatalf("push %d: the registry saw %d chunks, want %d", i+1, n, want)
				}
			}
		})
	}
}

// bigImage builds an image whose layer is size bytes of incompressible data.
func bigImage(t testing.TB, seed string, size int) (oci.Graph, *oci.Layout) {
	t.Helper()
	data := make([]byte, size)
	_, _ = rand.NewChaCha8(sha256.Sum256([]byte(seed))).Read(data)
	return registrytest.ImageOf(t, data)
}
