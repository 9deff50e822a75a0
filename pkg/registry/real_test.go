package registry_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/registry/registrytest"
	"github.com/google/go-containerregistry/pkg/name"
)

func TestPushToARealRegistryWithoutReferrersAPI(t *testing.T) {
	t.Parallel()
	host := registrytest.Distribution(t, registrytest.DockerRegistry)
	ctx := context.Background()
	g, l := imageWithSBOM(t)
	client := newClient(registry.WithChunking(128, 64<<10)) // every blob above 128 bytes goes in chunks
	ref, _ := name.ParseReference(host + "/team/app:lab")
	rec := &recorder{}
	if _, err := client.Push(ctx, ref, g, l, rec.observe); err != nil {
		t.Fatal(err)
	}
	if d := rec.final()[events.StageReferrers].Detail; d != "1 attached (0 via referrers API, 1 via fallback tag, 0 present)" {
		t.Errorf("referrers stage: %q", d)
	}
	repo, err := client.Open(ctx, ref.Context(), true)
	if err != nil {
		t.Fatal(err)
	}
	refs, err := repo.Referrers(ctx, g.Root.Digest)
	if err != nil || len(refs) != 1 || refs[0].ArtifactType != oci.MediaTypeSPDX {
		t.Fatalf("referrers %+v, %v", refs, err)
	}

	// Several writers attaching at once all end up in the fallback index.
	const writers = 6
	subject := g.Root
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		art, err := oci.BuildArtifact(ctx, oci.ArtifactConfig{ArtifactType: "application/vnd.example.sig",
			Annotations: map[string]string{"n": fmt.Sprint(i)}, Subject: &subject}, l)
		if err != nil {
			t.Fatal(err)
		}
		byDigest, _ := name.ParseReference(host + "/team/app@" + art.Root.Digest.String())
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := newClient().Push(ctx, byDigest, art, l, nil)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if refs, err = repo.Referrers(ctx, g.Root.Digest); err != nil || len(refs) != writers+1 {
		t.Fatalf("%d referrers after %d concurrent attachers (+ the SBOM), %v", len(refs), writers, err)
	}
}
