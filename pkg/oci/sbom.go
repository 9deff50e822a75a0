package oci

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// MediaTypeSPDX is the media type (and artifactType) of an SPDX JSON SBOM.
const MediaTypeSPDX = "application/spdx+json"

// spdxDocument is the part of SPDX 2.3 JSON that digestline writes.
type spdxDocument struct {
	SPDXVersion       string         `json:"spdxVersion"`
	DataLicense       string         `json:"dataLicense"`
	SPDXID            string         `json:"SPDXID"`
	Name              string         `json:"name"`
	DocumentNamespace string         `json:"documentNamespace"`
	CreationInfo      spdxCreation   `json:"creationInfo"`
	Packages          []spdxPackage  `json:"packages"`
	Files             []spdxFile     `json:"files"`
	Relationships     []spdxRelation `json:"relationships"`
}

type spdxCreation struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

type spdxPackage struct {
	SPDXID           string `json:"SPDXID"`
	Name             string `json:"name"`
	DownloadLocation string `json:"downloadLocation"`
	FilesAnalyzed    bool   `json:"filesAnalyzed"`
	PrimaryPurpose   string `json:"primaryPackagePurpose"`
}

type spdxFile struct {
	SPDXID    string         `json:"SPDXID"`
	FileName  string         `json:"fileName"`
	Checksums []spdxChecksum `json:"checksums"`
	Comment   string         `json:"comment,omitempty"`
}

type spdxChecksum struct {
	Algorithm string `json:"algorithm"`
	Value     string `json:"checksumValue"`
}

type spdxRelation struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

// BuildSBOM lists every regular file in the image's layers (read back from
// store, decompressed as they stream) with its SHA-256 in an SPDX 2.3 JSON
// document, and stores it as an artifact whose subject is the image. A file
// replaced by a later layer is listed as the last layer has it.
func BuildSBOM(ctx context.Context, image Graph, name string, created time.Time, store BlobStore) (Graph, error) {
	b, err := ReadManifest(ctx, store, image.Root)
	if err != nil {
		return Graph{}, err
	}
	var m v1.Manifest
	if err := json.Unmarshal(b, &m); err != nil || IsIndex(image.Root.MediaType) {
		return Graph{}, fmt.Errorf("an SBOM is built for an image manifest")
	}
	files := map[string]spdxFile{}
	var order []string
	for i, l := range m.Layers {
		if err := listLayer(ctx, store, l, func(path, sum string) {
			if _, seen := files[path]; !seen {
				order = append(order, path)
			}
			files[path] = spdxFile{FileName: path, Checksums: []spdxChecksum{{"SHA256", sum}}, Comment: fmt.Sprintf("layer %d", i+1)}
		}); err != nil {
			return Graph{}, err
		}
	}
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	doc := spdxDocument{
		SPDXVersion: "SPDX-2.3", DataLicense: "CC0-1.0", SPDXID: "SPDXRef-DOCUMENT", Name: name,
		DocumentNamespace: "https://digestline.dev/spdx/" + image.Root.Digest.Encoded(),
		CreationInfo:      spdxCreation{Created: created.UTC().Format(time.RFC3339), Creators: []string{"Tool: digestline"}},
		Packages: []spdxPackage{{SPDXID: "SPDXRef-Image", Name: name + "@" + image.Root.Digest.String(),
			DownloadLocation: "NOASSERTION", FilesAnalyzed: true, PrimaryPurpose: "CONTAINER"}},
		Files:         []spdxFile{},
		Relationships: []spdxRelation{{"SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image"}},
	}
	for i, p := range order {
		f := files[p]
		f.SPDXID = fmt.Sprintf("SPDXRef-File-%d", i+1)
		doc.Files = append(doc.Files, f)
		doc.Relationships = append(doc.Relationships, spdxRelation{"SPDXRef-Image", "CONTAINS", f.SPDXID})
	}
	raw, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return Graph{}, err
	}
	tmp, err := os.CreateTemp("", "digestline-sbom-*.spdx.json")
	if err != nil {
		return Graph{}, err
	}
	defer func() { _ = tmp.Close(); _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(raw); err != nil {
		return Graph{}, err
	}
	subject := image.Root
	subject.Platform, subject.Annotations = nil, nil
	return BuildArtifact(ctx, ArtifactConfig{
		ArtifactType: MediaTypeSPDX,
		Files:        []ArtifactFile{{Path: tmp.Name(), Title: "sbom.spdx.json", MediaType: MediaTypeSPDX}},
		Subject:      &subject,
		Created:      created,
	}, store)
}

// listLayer calls fn with the path and SHA-256 of every regular file in a layer.
func listLayer(ctx context.Context, store BlobReader, l v1.Descriptor, fn func(path, sum string)) error {
	rc, err := store.Open(ctx, l.Digest)
	if err != nil {
		return err
	}
	defer rc.Close()
	r, err := decompress(l.MediaType, rc)
	if err != nil {
		return err
	}
	defer r.Close()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read layer %s: %w", l.Digest, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		sum := sha256.New()
		if _, err := io.Copy(sum, tr); err != nil {
			return fmt.Errorf("read %s in layer %s: %w", h.Name, l.Digest, err)
		}
		fn("/"+strings.TrimPrefix(h.Name, "./"), hex.EncodeToString(sum.Sum(nil)))
	}
}

// decompress returns the tar stream of a layer of the given media type.
func decompress(mediaType string, r io.Reader) (io.ReadCloser, error) {
	switch {
	case strings.HasSuffix(mediaType, "+gzip") || strings.HasSuffix(mediaType, ".gzip"):
		return pgzip.NewReader(r)
	case strings.HasSuffix(mediaType, "+zstd"):
		zr, err := zstd.NewReader(r)
		if err != nil {
			return nil, err
		}
		return zr.IOReadCloser(), nil
	case strings.HasSuffix(mediaType, ".tar") || strings.HasSuffix(mediaType, "tar"):
		return io.NopCloser(r), nil
	}
	return nil, fmt.Errorf("layer media type %q: not a tar layer digestline can read", mediaType)
}
