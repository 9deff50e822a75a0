package oci_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/oci"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestBuildArtifactFollowsTheOCIArtifactShape(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	img, l := build(t, files(t, map[string]string{"bin/app": "binary"}), oci.ImageConfig{})
	f := filepath.Join(t.TempDir(), "namespace.yaml")
	if err := os.WriteFile(f, []byte("kind: Namespace\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	subject := img.Root
	g, err := oci.BuildArtifact(ctx, oci.ArtifactConfig{
		ArtifactType: "application/vnd.example.manifests.v1",
		Files:        []oci.ArtifactFile{{Path: f, MediaType: "application/yaml"}},
		Subject:      &subject,
	}, l)
	if err != nil {
		t.Fatal(err)
	}
	var m v1.Manifest
	readJSON(t, l, g.Root, &m)
	if m.ArtifactType != "application/vnd.example.manifests.v1" || g.Root.ArtifactType != m.ArtifactType {
		t.Errorf("artifactType %q (descriptor %q)", m.ArtifactType, g.Root.ArtifactType)
	}
	if m.Config.MediaType != oci.MediaTypeEmptyJSON || m.Config.Size != 2 || m.Config.Digest.String() != "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a" {
		t.Errorf("config %+v is not the empty descriptor", m.Config)
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != "application/yaml" || m.Layers[0].Annotations[v1.AnnotationTitle] != "namespace.yaml" {
		t.Errorf("layers %+v", m.Layers)
	}
	if m.Subject == nil || m.Subject.Digest != img.Root.Digest {
		t.Errorf("subject %+v", m.Subject)
	}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}

	if _, err := oci.BuildArtifact(ctx, oci.ArtifactConfig{}, l); err == nil {
		t.Error("an artifact without an artifactType was built")
	}
	empty, err := oci.BuildArtifact(ctx, oci.ArtifactConfig{ArtifactType: "application/vnd.example.signal"}, l)
	if err != nil {
		t.Fatal(err)
	}
	readJSON(t, l, empty.Root, &m)
	if len(m.Layers) != 1 || m.Layers[0].MediaType != oci.MediaTypeEmptyJSON {
		t.Errorf("an artifact without files has layers %+v, want the empty descriptor", m.Layers)
	}
}

func TestBuildSBOMListsEveryFileWithItsDigest(t *testing.T) {
	t.Parallel()
	for _, c := range []oci.Compression{oci.Gzip, oci.Zstd, oci.Uncompressed} {
		t.Run(string(c), func(t *testing.T) {
			t.Parallel()
			img, l := build(t, files(t, map[string]string{"bin/app": "binary", "etc/app.conf": "x=1", "vendor/lib.go": "lib"}), oci.ImageConfig{
				Layers: []oci.LayerRule{{Name: "vendor", Paths: []string{"vendor"}}}, Format: oci.LayerFormat{Compression: c},
			})
			sbom, err := oci.BuildSBOM(context.Background(), img, "example.com/app", time.Time{}, l)
			if err != nil {
				t.Fatal(err)
			}
			var m v1.Manifest
			readJSON(t, l, sbom.Root, &m)
			if m.ArtifactType != oci.MediaTypeSPDX || m.Subject == nil || m.Subject.Digest != img.Root.Digest {
				t.Fatalf("SBOM manifest %+v", m)
			}
			var doc struct {
				SPDXVersion string `json:"spdxVersion"`
				Files       []struct {
					FileName  string `json:"fileName"`
					Checksums []struct {
						Algorithm string `json:"algorithm"`
						Value     string `json:"checksumValue"`
					} `json:"checksums"`
				} `json:"files"`
			}
			readJSON(t, l, m.Layers[0], &doc)
			got := map[string]string{}
			for _, f := range doc.Files {
				got[f.FileName] = f.Checksums[0].Value
			}
			want := map[string]string{
				"./bin/app":       sha256hex("binary"),
				"./etc/app.conf":  sha256hex("x=1"),
				"./vendor/lib.go": sha256hex("lib"),
			}
			if doc.SPDXVersion != "SPDX-2.3" || len(got) != len(want) {
				t.Fatalf("SBOM %+v", doc)
			}
			for name, sum := range want {
				if got[name] != sum {
					t.Errorf("%s: SBOM says %q, want %q", name, got[name], sum)
				}
			}
		})
	}
}

func sha256hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
