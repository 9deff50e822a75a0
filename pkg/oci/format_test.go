package oci_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/oci"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func TestEveryLayerFormatBuildsAValidImage(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	writeTree(t, src, time.Now())
	// Several compression blocks, so parallel compression really splits.
	big := make([]byte, 3<<20)
	_, _ = rand.Read(big[:1<<20])
	if err := os.WriteFile(filepath.Join(src, "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		format                  oci.LayerFormat
		layerType, manifestType string
	}{
		"gzip":         {oci.LayerFormat{}, "application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.manifest.v1+json"},
		"gzip level 1": {oci.LayerFormat{Level: 1}, "application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.manifest.v1+json"},
		"zstd":         {oci.LayerFormat{Compression: oci.Zstd}, "application/vnd.oci.image.layer.v1.tar+zstd", "application/vnd.oci.image.manifest.v1+json"},
		"none":         {oci.LayerFormat{Compression: oci.Uncompressed}, "application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.manifest.v1+json"},
		"docker gzip":  {oci.LayerFormat{Docker: true}, oci.MediaTypeDockerLayerGzip, oci.MediaTypeDockerManifest},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			build := func(jobs int) oci.Graph {
				dir := t.TempDir()
				l, err := oci.CreateLayout(dir)
				if err != nil {
					t.Fatal(err)
				}
				cfg := testConfig
				cfg.Format = tc.format
				cfg.Format.Jobs = jobs
				g, err := oci.BuildImage(context.Background(), src, cfg, l)
				if err != nil {
					t.Fatal(err)
				}
				if err := l.SetRoot(g.Root, ""); err != nil {
					t.Fatal(err)
				}
				// go-containerregistry checks manifest, config and blob
				// digests (its layer check assumes gzip, so diff ids are
				// checked below through its own decompression).
				img := layoutImage(t, dir, g.Root.Digest.String())
				if err := validate.Image(img, validate.Fast); err != nil {
					t.Fatalf("validate.Image: %v", err)
				}
				layers, err := img.Layers()
				if err != nil {
					t.Fatal(err)
				}
				for _, layer := range layers {
					want, err := layer.DiffID()
					if err != nil {
						t.Fatal(err)
					}
					rc, err := layer.Uncompressed()
					if err != nil {
						t.Fatal(err)
					}
					h := sha256.New()
					_, err = io.Copy(h, rc)
					_ = rc.Close()
					if err != nil {
						t.Fatal(err)
					}
					if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != want.String() {
						t.Fatalf("diff id in config %s, uncompressed layer hashes to %s", want, got)
					}
				}
				return g
			}
			one, four := build(1), build(4)
			if one.Root.Digest != four.Root.Digest {
				t.Fatalf("1 and 4 compression jobs gave different digests: %s, %s", one.Root.Digest, four.Root.Digest)
			}
			if got := one.Blobs()[1].MediaType; got != tc.layerType {
				t.Errorf("layer media type %q, want %q", got, tc.layerType)
			}
			if got := one.Root.MediaType; got != tc.manifestType {
				t.Errorf("manifest media type %q, want %q", got, tc.manifestType)
			}
		})
	}
}

func TestLayerFormatRejectsWhatCannotBeBuilt(t *testing.T) {
	t.Parallel()
	for name, f := range map[string]oci.LayerFormat{
		"unknown compression": {Compression: "brotli"},
		"gzip level 12":       {Level: 12},
		"zstd level 9":        {Compression: oci.Zstd, Level: 9},
		"docker with zstd":    {Compression: oci.Zstd, Docker: true},
	} {
		if err := f.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
