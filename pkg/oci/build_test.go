package oci_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/oci"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// writeTree creates files under dir with the given mtime.
func writeTree(t *testing.T, dir string, mtime time.Time) {
	t.Helper()
	files := map[string]string{"bin/app": "#!/bin/sh\necho hi\n", "etc/app.conf": "x=1\n", "README": "hello\n"}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("bin/app", filepath.Join(dir, "app")); err != nil {
		t.Fatal(err)
	}
}

var testConfig = oci.ImageConfig{
	Entrypoint: []string{"/bin/app"},
	Platform:   mustPlatform("linux/amd64"),
}

func mustPlatform(s string) v1.Platform {
	p, err := oci.ParsePlatform(s)
	if err != nil {
		panic(err)
	}
	return p
}

func TestBuildImageIsReproducible(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	build := func(mtime time.Time) oci.Graph {
		src := t.TempDir()
		writeTree(t, src, mtime)
		store, err := oci.CreateLayout(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		g, err := oci.BuildImage(ctx, src, testConfig, store)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	a := build(time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC))
	b := build(time.Now())
	if a.Root.Digest != b.Root.Digest {
		t.Fatalf("same content, different mtimes and directories: %s vs %s", a.Root.Digest, b.Root.Digest)
	}
	if len(a.Descriptors) != 3 {
		t.Fatalf("graph has %d descriptors, want config, layer, manifest", len(a.Descriptors))
	}

	// Anything that is content changes the digest.
	cfg := testConfig
	cfg.Created = time.Unix(1700000000, 0)
	src := t.TempDir()
	writeTree(t, src, time.Now())
	store, _ := oci.CreateLayout(t.TempDir())
	c, err := oci.BuildImage(ctx, src, cfg, store)
	if err != nil {
		t.Fatal(err)
	}
	if c.Root.Digest == a.Root.Digest {
		t.Fatal("SOURCE_DATE_EPOCH did not change the digest")
	}
}

func TestLayoutRoundTripsThroughGoContainerRegistry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src, dir := t.TempDir(), t.TempDir()
	writeTree(t, src, time.Now())
	l, err := oci.CreateLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	g, err := oci.BuildImage(ctx, src, testConfig, l)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetRoot(g.Root, "lab"); err != nil {
		t.Fatal(err)
	}

	// An independent reader accepts it, with every digest and diff id right.
	if err := validate.Image(layoutImage(t, dir, g.Root.Digest.String())); err != nil {
		t.Fatalf("validate.Image: %v", err)
	}

	// And our own reader finds the same graph.
	reopened, err := oci.OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	walked, err := reopened.Graph(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(walked.Descriptors) != len(g.Descriptors) || walked.Root.Digest != g.Root.Digest {
		t.Fatalf("walked %+v, built %+v", walked, g)
	}
	for i := range g.Descriptors {
		if walked.Descriptors[i].Digest != g.Descriptors[i].Digest {
			t.Errorf("descriptor %d: walked %s, built %s", i, walked.Descriptors[i].Digest, g.Descriptors[i].Digest)
		}
	}
}

func TestOpenLayoutExplainsWhatIsMissing(t *testing.T) {
	t.Parallel()
	if _, err := oci.OpenLayout(t.TempDir()); err == nil {
		t.Fatal("an empty directory opened as a layout")
	}
}
