package registry_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry/registrytest"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestAGraphReadFromOneRegistryPushesToAnother: a multi-platform index with
// an artifact attached to it, and one attached to that artifact, read from
// a registry without the referrers API (the fallback tag) and pushed to
// one with it: the same digests arrive, every referrer listed under its
// own subject, and the second push sends nothing.
func TestAGraphReadFromOneRegistryPushesToAnother(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	index, l := multiPlatformIndex(t)
	note, err := oci.BuildArtifact(ctx, oci.ArtifactConfig{ArtifactType: "application/vnd.example.note", Files: []oci.ArtifactFile{{Content: []byte("note"), Title: "note"}}, Subject: &index.Root}, l)
	if err != nil {
		t.Fatal(err)
	}
	review, err := oci.BuildArtifact(ctx, oci.ArtifactConfig{ArtifactType: "application/vnd.example.review", Files: []oci.ArtifactFile{{Content: []byte("ok"), Title: "review"}}, Subject: &note.Root}, l)
	if err != nil {
		t.Fatal(err)
	}
	index.Referrers = []oci.Graph{note, review}

	from := registrytest.Distribution(t, registrytest.DockerRegistry) // no referrers API: the fallback tag
	to := newOlareg(t)                                                // the referrers API
	client := newClient()
	if _, err := client.Push(ctx, mustRef(t, from+"/team/multi:1"), index, l, nil); err != nil {
		t.Fatal(err)
	}
	src, err := client.Open(ctx, mustRef(t, from+"/team/multi:1").Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	g, source, err := src.Graph(ctx, index.Root.Digest, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Descriptors) != len(index.Descriptors) || len(g.Referrers) != 2 {
		t.Fatalf("read %d descriptors and %d referrers, pushed %d and 2", len(g.Descriptors), len(g.Referrers), len(index.Descriptors))
	}
	dst := mustRef(t, to+"/prod/multi@"+index.Root.Digest.String())
	res, err := client.Push(ctx, dst, g, source, nil)
	if err != nil || res.Digest != index.Root.Digest {
		t.Fatalf("push to the other registry: %v, %s", err, res.Digest)
	}
	repo, err := client.Open(ctx, dst.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	for subject, want := range map[digest.Digest]oci.Graph{index.Root.Digest: note, note.Root.Digest: review} {
		refs, err := repo.Referrers(ctx, subject)
		if err != nil || !slices.ContainsFunc(refs, func(d v1.Descriptor) bool { return d.Digest == want.Root.Digest }) {
			t.Fatalf("referrers of %s at the destination: %+v, %v", subject, refs, err)
		}
	}
	if again, err := client.Push(ctx, dst, g, source, nil); err != nil || again.Uploaded != 0 {
		t.Fatalf("pushed again: %v, %d uploaded", err, again.Uploaded)
	}
}

// multiPlatformIndex builds an index of two platforms' images into a new
// layout.
func multiPlatformIndex(t *testing.T) (oci.Graph, *oci.Layout) {
	t.Helper()
	ctx := context.Background()
	l, err := oci.CreateLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var images []oci.Graph
	for _, arch := range []string{"linux/amd64", "linux/arm64"} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "app"), []byte(arch), 0o755); err != nil {
			t.Fatal(err)
		}
		p, _ := oci.ParsePlatform(arch)
		g, err := oci.BuildImage(ctx, dir, oci.ImageConfig{Platform: p}, l)
		if err != nil {
			t.Fatal(err)
		}
		images = append(images, g)
	}
	index, err := oci.BuildIndex(ctx, images, oci.LayerFormat{}, nil, l)
	if err != nil {
		t.Fatal(err)
	}
	return index, l
}
