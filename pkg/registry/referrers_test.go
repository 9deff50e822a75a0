package registry_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/olareg/olareg"
	olaregconfig "github.com/olareg/olareg/config"
)

// newOlareg serves olareg (the registry digestline dev embeds) from memory:
// it has the referrers API and a blob store per repository.
func newOlareg(t *testing.T, faults ...fault) string {
	t.Helper()
	reg := olareg.New(olaregconfig.Config{Storage: olaregconfig.ConfigStorage{StoreType: olaregconfig.StoreMem}})
	t.Cleanup(func() { _ = reg.Close() })
	return serve(t, reg, faults...)
}

// imageWithSBOM builds an image and attaches its SBOM as a referrer.
func imageWithSBOM(t *testing.T) (oci.Graph, *oci.Layout) {
	t.Helper()
	g, l := buildImage(t, "with an sbom")
	sbom, err := oci.BuildSBOM(context.Background(), g, "app", time.Time{}, l)
	if err != nil {
		t.Fatal(err)
	}
	g.Referrers = []oci.Graph{sbom}
	return g, l
}

func TestPushAttachesReferrers(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		host     func(*testing.T) string
		viaWhat  string
		requests int // of the whole first push
	}{
		// The image's 8, then the SBOM's config and document as single
		// POSTs (the upload stage found the registry takes them), sent
		// while the image's manifest goes up, and its manifest: nothing is
		// asked first, as the image was not in the registry.
		"registry with the referrers API": {func(t *testing.T) string { return newOlareg(t) }, "1 via referrers API", 11},
		// The image's 8, the SBOM's 3, and the fallback tag read, written
		// and read again.
		"registry without the referrers API": {func(t *testing.T) string { return newRegistry(t) }, "1 via fallback tag", 14},
	}
	for label, tc := range cases {
		t.Run(label, func(t *testing.T) {
			t.Parallel()
			host := tc.host(t)
			g, l := imageWithSBOM(t)
			ref, _ := name.ParseReference(host + "/team/app:lab")
			rec := &recorder{}
			client := newClient()
			res, err := client.Push(context.Background(), ref, g, l, rec.observe)
			if err != nil {
				t.Fatal(err)
			}
			if d := rec.final()[events.StageReferrers].Detail; !strings.Contains(d, tc.viaWhat) {
				t.Errorf("referrers stage says %q, want %q", d, tc.viaWhat)
			}
			if res.Requests != tc.requests {
				t.Errorf("the push made %d requests, want %d", res.Requests, tc.requests)
			}
			repo, err := client.Open(context.Background(), ref.Context(), false)
			if err != nil {
				t.Fatal(err)
			}
			refs, err := repo.Referrers(context.Background(), g.Root.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if len(refs) != 1 || refs[0].Digest != g.Referrers[0].Root.Digest || refs[0].ArtifactType != oci.MediaTypeSPDX {
				t.Fatalf("referrers %+v", refs)
			}

			// Pushing again attaches nothing twice.
			again := &recorder{}
			if _, err := client.Push(context.Background(), ref, g, l, again.observe); err != nil {
				t.Fatal(err)
			}
			if refs, _ = repo.Referrers(context.Background(), g.Root.Digest); len(refs) != 1 {
				t.Fatalf("after a second push: %d referrers", len(refs))
			}
		})
	}
}

// When the image is new, what is attached to it goes up while its tag
// moves: the registry holds the tag's PUT until the SBOM's manifest
// arrives (or 5 s have passed).
func TestAttachedManifestsGoUpWhileTheTagMoves(t *testing.T) {
	t.Parallel()
	g, l := imageWithSBOM(t)
	sbom := "/manifests/" + g.Referrers[0].Root.Digest.String()
	var (
		arrived = make(chan struct{})
		once    sync.Once
		beside  atomic.Bool // the tag's PUT saw the SBOM's arrive
	)
	host := newOlareg(t, func(r *http.Request) (int, http.Header, bool) {
		switch {
		case r.Method != http.MethodPut:
		case strings.HasSuffix(r.URL.Path, sbom):
			once.Do(func() { close(arrived) })
		case strings.HasSuffix(r.URL.Path, "/manifests/lab"):
			select {
			case <-arrived:
				beside.Store(true)
			case <-time.After(5 * time.Second):
			}
		}
		return 0, nil, false
	})
	ref, _ := name.ParseReference(host + "/team/app:lab")
	rec := &recorder{}
	if _, err := newClient().Push(context.Background(), ref, g, l, rec.observe); err != nil {
		t.Fatal(err)
	}
	if !beside.Load() {
		t.Error("the SBOM's manifest went up after the tag moved, not while it did")
	}
	if d := rec.final()[events.StageReferrers].Detail; !strings.Contains(d, "1 via referrers API") {
		t.Errorf("referrers stage says %q, want it to report the SBOM attached", d)
	}
}

func TestConcurrentAttachersBothEndUpInTheFallbackIndex(t *testing.T) {
	t.Parallel()
	host := newRegistry(t)
	g, _ := buildImage(t, "subject")
	ref, _ := name.ParseReference(host + "/team/app:lab")
	client := newClient()
	ctx := context.Background()
	repo, err := client.Open(ctx, ref.Context(), true)
	if err != nil {
		t.Fatal(err)
	}
	// Real artifacts, each pushed by digest: the registry checks an index's entries exist.
	const writers = 8
	l, err := oci.CreateLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	subject := g.Root
	artifacts := make([]oci.Graph, writers)
	for i := range artifacts {
		artifacts[i], err = oci.BuildArtifact(ctx, oci.ArtifactConfig{ArtifactType: "application/vnd.example.sig",
			Annotations: map[string]string{"n": fmt.Sprint(i)}, Subject: &subject}, l)
		if err != nil {
			t.Fatal(err)
		}
		byDigest, _ := name.ParseReference(host + "/team/app@" + artifacts[i].Root.Digest.String())
		if _, err := client.Push(ctx, byDigest, artifacts[i], l, nil); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for _, a := range artifacts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- repo.AddFallbackReferrers(ctx, g.Root.Digest, a.Root)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	refs, err := repo.Referrers(ctx, g.Root.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != writers {
		t.Fatalf("%d of %d concurrent attachers are listed", len(refs), writers)
	}
}

func TestAnArtifactPushedOnItsOwnIsListedForItsSubject(t *testing.T) {
	t.Parallel()
	host := newRegistry(t) // no referrers API: the fallback tag must be maintained
	g, l := buildImage(t, "subject alone")
	ctx := context.Background()
	client := newClient()
	ref, _ := name.ParseReference(host + "/team/app:lab")
	if _, err := client.Push(ctx, ref, g, l, nil); err != nil {
		t.Fatal(err)
	}
	subject := g.Root
	art, err := oci.BuildArtifact(ctx, oci.ArtifactConfig{ArtifactType: "application/vnd.example.sig", Subject: &subject}, l)
	if err != nil {
		t.Fatal(err)
	}
	byDigest, _ := name.ParseReference(host + "/team/app@" + art.Root.Digest.String())
	if _, err := client.Push(ctx, byDigest, art, l, nil); err != nil {
		t.Fatal(err)
	}
	repo, _ := client.Open(ctx, ref.Context(), false)
	refs, err := repo.Referrers(ctx, g.Root.Digest)
	if err != nil || len(refs) != 1 || refs[0].Digest != art.Root.Digest || refs[0].ArtifactType != "application/vnd.example.sig" {
		t.Fatalf("referrers %+v, %v", refs, err)
	}
}
