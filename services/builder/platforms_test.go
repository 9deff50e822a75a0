package builder_test

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/oci"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/klauspost/pgzip"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// examplesDir is the examples module, whose ./hello is a small main package.
func examplesDir(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "examples")
}

// layerFile returns a file's bytes from a gzip layer.
func layerFile(t *testing.T, l *oci.Layout, d v1.Descriptor, name string) []byte {
	t.Helper()
	rc, err := l.Open(context.Background(), d.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	zr, err := pgzip.NewReader(rc)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s not in layer %s", name, d.Digest)
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == name {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

func validateIndex(t *testing.T, dir string, g oci.Graph) {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := ggcrv1.NewHash(g.Root.Digest.String())
	top, err := p.ImageIndex() // the layout's index.json
	if err != nil {
		t.Fatal(err)
	}
	idx, err := top.ImageIndex(h)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("validate.Index: %v", err)
	}
}

func TestGoCrossCompiledIndex(t *testing.T) {
	t.Parallel()
	spec := events.BuildSpec{Go: &events.GoBuild{Main: "./hello", Ldflags: "-s -w"}, Platforms: []string{"linux/arm64", "linux/amd64"}}
	g, out := buildInto(t, examplesDir(t), spec)
	if g.Root.MediaType != v1.MediaTypeImageIndex {
		t.Fatalf("root is %s, want an index", g.Root.MediaType)
	}
	validateIndex(t, out, g)

	l, _ := oci.OpenLayout(out)
	var idx v1.Index
	readJSONBlob(t, l, g.Root, &idx)
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	if len(idx.Manifests) != 2 || idx.Manifests[0].Platform.Architecture != "amd64" {
		t.Fatalf("index %+v: want amd64 then arm64", idx.Manifests)
	}
	for _, d := range idx.Manifests {
		var m v1.Manifest
		readJSONBlob(t, l, d, &m)
		var cfg v1.Image
		readJSONBlob(t, l, m.Config, &cfg)
		if cfg.Architecture != d.Platform.Architecture || len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != "/hello" {
			t.Errorf("%s config %+v", d.Platform.Architecture, cfg)
		}
		bin, err := elf.NewFile(bytes.NewReader(layerFile(t, l, m.Layers[0], "hello")))
		if err != nil {
			t.Fatal(err)
		}
		if bin.Machine != machines[d.Platform.Architecture] {
			t.Errorf("%s image holds a %s binary", d.Platform.Architecture, bin.Machine)
		}
	}

	again, _ := buildInto(t, examplesDir(t), spec)
	if again.Root.Digest != g.Root.Digest {
		t.Fatalf("the same Go source gave %s, then %s", g.Root.Digest, again.Root.Digest)
	}
}

func TestIndexFromPerPlatformDirectories(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, arch := range []string{"amd64", "arm64"} {
		sub := filepath.Join(dir, "dist", arch)
		mkdirAll(t, sub)
		write(t, sub, "app", "binary for "+arch)
	}
	g, out := buildInto(t, dir, events.BuildSpec{PlatformSources: map[string]string{"linux/amd64": "dist/amd64", "linux/arm64": "dist/arm64"}})
	validateIndex(t, out, g)
	l, _ := oci.OpenLayout(out)
	var idx v1.Index
	readJSONBlob(t, l, g.Root, &idx)
	for _, d := range idx.Manifests {
		var m v1.Manifest
		readJSONBlob(t, l, d, &m)
		if got := string(layerFile(t, l, m.Layers[0], "app")); got != "binary for "+d.Platform.Architecture {
			t.Errorf("%s image holds %q", d.Platform.Architecture, got)
		}
	}

	// A platform without a directory, and a directory outside the source, are refused.
	for name, spec := range map[string]events.BuildSpec{
		"missing entry": {Platforms: []string{"linux/amd64", "linux/s390x"}, PlatformSources: map[string]string{"linux/amd64": "dist/amd64"}},
		"escaping path": {PlatformSources: map[string]string{"linux/amd64": "../../etc"}},
	} {
		l, _ := oci.CreateLayout(t.TempDir())
		if _, err := buildErr(dir, spec, l); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
