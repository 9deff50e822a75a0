package oci_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/digestline/digestline/pkg/oci"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// files writes a tree of name → content.
func files(t *testing.T, tree map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range tree {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// layerNames lists the regular files in each layer of g, read back from l.
func layerNames(t *testing.T, l *oci.Layout, g oci.Graph) [][]string {
	t.Helper()
	var out [][]string
	for _, d := range g.Blobs()[1:] {
		rc, err := l.Open(context.Background(), d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(rc)
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(zr)
		var names []string
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Typeflag == tar.TypeReg {
				names = append(names, h.Name)
			}
		}
		_ = rc.Close()
		out = append(out, names)
	}
	return out
}

func build(t *testing.T, dir string, cfg oci.ImageConfig) (oci.Graph, *oci.Layout) {
	t.Helper()
	l, err := oci.CreateLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Platform.OS == "" {
		cfg.Platform = mustPlatform("linux/amd64")
	}
	g, err := oci.BuildImage(context.Background(), dir, cfg, l)
	if err != nil {
		t.Fatal(err)
	}
	return g, l
}

var appTree = map[string]string{
	"main.go":               "package main",
	"README.md":             "docs",
	"vendor/lib/lib.go":     "package lib",
	"vendor/lib/lib.tmp":    "scratch",
	"node_modules/x/y.js":   "js",
	".git/HEAD":             "ref",
	"build/out.tmp":         "scratch",
	"cmd/tool/main.go":      "package main",
	"cmd/tool/testdata/a.b": "fixture",
}

func TestIgnorePatterns(t *testing.T) {
	t.Parallel()
	dir := files(t, appTree)
	g, l := build(t, dir, oci.ImageConfig{Ignore: []string{".git", "*.tmp", "/README.md", "cmd/**/testdata"}})
	got := layerNames(t, l, g)
	want := [][]string{{"cmd/tool/main.go", "main.go", "node_modules/x/y.js", "vendor/lib/lib.go"}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("layers hold %v, want %v", got, want)
	}
}

func TestLayerRulesSplitFilesAndKeepStableLayersStable(t *testing.T) {
	t.Parallel()
	rules := []oci.LayerRule{{Name: "vendor", Paths: []string{"vendor/**"}}, {Name: "js", Paths: []string{"node_modules"}}}
	cfg := oci.ImageConfig{Layers: rules, Ignore: []string{".git", "*.tmp"}}
	g1, l1 := build(t, files(t, appTree), cfg)
	got := layerNames(t, l1, g1)
	want := [][]string{{"vendor/lib/lib.go"}, {"node_modules/x/y.js"}, {"README.md", "cmd/tool/main.go", "cmd/tool/testdata/a.b", "main.go"}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("layers hold %v, want %v", got, want)
	}
	if name := g1.Blobs()[1].Annotations[oci.AnnotationLayerName]; name != "vendor" {
		t.Errorf("first layer annotated %q", name)
	}

	// Change only the app: the dependency layers keep their digests.
	changed := maps(appTree, "main.go", "package main // v2")
	g2, _ := build(t, files(t, changed), cfg)
	for i := 1; i <= 2; i++ {
		if g1.Blobs()[i].Digest != g2.Blobs()[i].Digest {
			t.Errorf("layer %d changed although none of its files did", i)
		}
	}
	if g1.Blobs()[3].Digest == g2.Blobs()[3].Digest {
		t.Error("the app layer did not change with the app")
	}
}

func TestRulesThatMatchNothingMakeNoLayer(t *testing.T) {
	t.Parallel()
	g, _ := build(t, files(t, map[string]string{"a": "1"}), oci.ImageConfig{Layers: []oci.LayerRule{{Name: "none", Paths: []string{"vendor/**"}}}})
	if n := len(g.Blobs()) - 1; n != 1 {
		t.Fatalf("%d layers, want 1", n)
	}
}

func TestBadPatternsAreRefused(t *testing.T) {
	t.Parallel()
	l, _ := oci.CreateLayout(t.TempDir())
	_, err := oci.BuildImage(context.Background(), t.TempDir(), oci.ImageConfig{Ignore: []string{"[unclosed"}}, l)
	if err == nil {
		t.Fatal("a malformed glob was accepted")
	}
}

func TestConfigCarriesUserPortsAndAnnotations(t *testing.T) {
	t.Parallel()
	g, l := build(t, files(t, map[string]string{"a": "1"}), oci.ImageConfig{
		User: "65532:65532", ExposedPorts: []string{"8080", "53/udp"},
		Annotations: map[string]string{v1.AnnotationSource: "https://example.com/app.git", v1.AnnotationRevision: "abc123"},
	})
	var cfg v1.Image
	readJSON(t, l, g.Blobs()[0], &cfg)
	if cfg.Config.User != "65532:65532" || len(cfg.Config.ExposedPorts) != 2 {
		t.Fatalf("config %+v", cfg.Config)
	}
	if _, ok := cfg.Config.ExposedPorts["8080/tcp"]; !ok {
		t.Errorf("ports %v: a bare port should default to tcp", cfg.Config.ExposedPorts)
	}
	var m v1.Manifest
	readJSON(t, l, g.Root, &m)
	if m.Annotations[v1.AnnotationRevision] != "abc123" || m.Annotations[v1.AnnotationCreated] != "1970-01-01T00:00:00Z" {
		t.Fatalf("annotations %v", m.Annotations)
	}
}

func maps(m map[string]string, k, v string) map[string]string {
	out := map[string]string{}
	for a, b := range m {
		out[a] = b
	}
	out[k] = v
	return out
}
