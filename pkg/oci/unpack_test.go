package oci_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/digestline/digestline/pkg/oci"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

func dir(name string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755}}
}
func symlink(name, to string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: to}}
}
func hardlink(name, to string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: to}}
}

// layerTar is an uncompressed layer of entries.
func layerTar(t *testing.T, entries ...entry) []byte {
	t.Helper()
	b, err := io.ReadAll(tarball(t, entries...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// blobs is a BlobReader over a map: a test can serve other bytes than a
// digest names.
type blobs map[digest.Digest][]byte

func (b blobs) Open(_ context.Context, d digest.Digest) (io.ReadCloser, error) {
	c, ok := b[d]
	if !ok {
		return nil, fmt.Errorf("%w: %s", oci.ErrBlobNotFound, d)
	}
	return io.NopCloser(bytes.NewReader(c)), nil
}

func (b blobs) put(content []byte, mediaType string) v1.Descriptor {
	d := v1.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(content), Size: int64(len(content))}
	b[d.Digest] = content
	return d
}

// image stores an image of uncompressed layers and returns its manifest.
func image(t *testing.T, b blobs, layers ...[]byte) v1.Descriptor {
	t.Helper()
	m := v1.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest,
		Config: b.put([]byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}`), v1.MediaTypeImageConfig)}
	for _, l := range layers {
		m.Layers = append(m.Layers, b.put(l, v1.MediaTypeImageLayer))
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b.put(raw, v1.MediaTypeImageManifest)
}

func TestUnpackAppliesLayersWithWhiteouts(t *testing.T) {
	b := blobs{}
	root := image(t, b,
		layerTar(t, dir("a/"), file("a/keep", "kept"), file("a/gone", "x"), dir("o/"), file("o/old", "x"),
			file("f", "a file"), dir("d/"), file("d/x", "x"), symlink("rel", "a/keep"), dir("bin/"), symlink("bin/sh", "/bin/busybox"),
			symlink("lib", "/usr/lib")),
		layerTar(t, file("a/.wh.gone", ""), file("o/new", "new"), file("o/.wh..wh..opq", ""), dir("lib/"), file("lib/x.so", "so"),
			dir("f/"), file("f/inner", "in"), file("d", "now a file"), hardlink("a/hl", "a/keep")),
	)
	out := t.TempDir()
	if err := oci.Unpack(context.Background(), b, root, v1.Platform{}, out, oci.DefaultExtractLimits); err != nil {
		t.Fatal(err)
	}
	read := func(p string) string {
		c, err := os.ReadFile(filepath.Join(out, p))
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return string(c)
	}
	for p, want := range map[string]string{"a/keep": "kept", "a/hl": "kept", "o/new": "new", "f/inner": "in", "d": "now a file", "rel": "kept", "lib/x.so": "so"} {
		if got := read(p); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	for _, gone := range []string{"a/gone", "a/.wh.gone", "o/old", "o/.wh..wh..opq"} {
		if _, err := os.Lstat(filepath.Join(out, gone)); !os.IsNotExist(err) {
			t.Errorf("%s survived the whiteout (%v)", gone, err)
		}
	}
	if target, err := os.Readlink(filepath.Join(out, "bin/sh")); err != nil || target != "/bin/busybox" {
		t.Errorf("bin/sh links to %q (%v): an absolute link inside an image is kept as it is", target, err)
	}
}

func TestUnpackRefusesHostileLayers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		layers func(outside string) [][]entry
		want   string // in the error, besides the layer number
		layer  int
	}{
		{"dot-dot entry", func(string) [][]entry { return [][]entry{{file("../evil", "x")}} }, `"../evil"`, 1},
		{"absolute entry", func(string) [][]entry { return [][]entry{{file("/evil", "x")}} }, `"/evil": absolute path`, 1},
		{"symlink climbing out", func(string) [][]entry { return [][]entry{{symlink("link", "../../outside/x")}} }, `"link": symlink to`, 1},
		{"hardlink climbing out", func(string) [][]entry { return [][]entry{{hardlink("hl", "../outside/x")}} }, `"hl": hardlink`, 1},
		{"symlink planted by an earlier layer", func(outside string) [][]entry {
			return [][]entry{{symlink("etc", outside)}, {file("etc/passwd", "root::0:0")}}
		}, `"etc/passwd"`, 2},
		{"directories made through a planted symlink", func(outside string) [][]entry {
			return [][]entry{{dir("usr/"), symlink("usr/lib", outside)}, {file("usr/lib/sub/x.so", "x")}}
		}, `"usr/lib/sub/x.so"`, 2},
		{"whiteout of the parent", func(string) [][]entry { return [][]entry{{dir("a/")}, {file("a/.wh..", "")}} }, `whiteout`, 2},
		{"device file", func(string) [][]entry {
			return [][]entry{{{hdr: tar.Header{Name: "dev/null", Typeflag: tar.TypeChar}}}}
		}, `device`, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			out, outside := filepath.Join(base, "root"), filepath.Join(base, "outside")
			if err := os.Mkdir(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			b := blobs{}
			var layers [][]byte
			for _, l := range tc.layers(outside) {
				layers = append(layers, layerTar(t, l...))
			}
			err := oci.Unpack(context.Background(), b, image(t, b, layers...), v1.Platform{}, out, oci.DefaultExtractLimits)
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("layer %d (sha256:", tc.layer)) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Unpack = %v, want a refusal at layer %d naming %s", err, tc.layer, tc.want)
			}
			if left, _ := os.ReadDir(outside); len(left) != 0 {
				t.Fatalf("wrote outside the root: %v", left)
			}
			if _, err := os.Lstat(filepath.Join(base, "evil")); !os.IsNotExist(err) {
				t.Fatal("wrote beside the root")
			}
		})
	}
}

func TestUnpackRefusesAnAlteredLayer(t *testing.T) {
	b := blobs{}
	root := image(t, b, layerTar(t, file("app", "the real app")))
	var m v1.Manifest
	_ = json.Unmarshal(b[root.Digest], &m)
	b[m.Layers[0].Digest] = layerTar(t, file("app", "a substitute"))
	err := oci.Unpack(context.Background(), b, root, v1.Platform{}, t.TempDir(), oci.DefaultExtractLimits)
	if err == nil || !strings.Contains(err.Error(), "layer 1") || !strings.Contains(err.Error(), "altered") {
		t.Fatalf("Unpack = %v, want the altered layer named", err)
	}
}
