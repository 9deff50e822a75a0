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
	SPDXID           string       `json:"SPDXID"`
	Name             string       `json:"name"`
	VersionInfo      string       `json:"versionInfo,omitempty"`
	DownloadLocation string       `json:"downloadLocation"`
	FilesAnalyzed    bool         `json:"filesAnalyzed"`
	PrimaryPurpose   string       `json:"primaryPackagePurpose,omitempty"`
	SourceInfo       string       `json:"sourceInfo,omitempty"`
	ExternalRefs     []spdxExtRef `json:"externalRefs,omitempty"`
}

type spdxExtRef struct {
	Category string `json:"referenceCategory"`
	Type     string `json:"referenceType"`
	Locator  string `json:"referenceLocator"`
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

// inventory is what an image holds: every regular file as the last layer
// that has it leaves it, and the packages those files list.
type inventory struct {
	files    []spdxFile
	packages []Package
}

// takeInventory reads the image's layers back from store, decompressed as
// they stream. A file replaced by a later layer counts as the last layer
// has it, and so do the packages it lists.
func takeInventory(ctx context.Context, image Graph, store BlobReader) (inventory, error) {
	b, err := ReadManifest(ctx, store, image.Root)
	if err != nil {
		return inventory{}, err
	}
	var m v1.Manifest
	if err := json.Unmarshal(b, &m); err != nil || IsIndex(image.Root.MediaType) {
		return inventory{}, fmt.Errorf("an SBOM is built for an image manifest")
	}
	files := map[string]spdxFile{}
	pkgs := map[string][]Package{}
	var order []string
	for i, l := range m.Layers {
		if err := listLayer(ctx, store, l, func(path, sum string, found []Package) {
			if _, seen := files[path]; !seen {
				order = append(order, path)
			}
			// SPDX names a file relative to its package's root, "./" first.
			files[path] = spdxFile{FileName: "." + path, Checksums: []spdxChecksum{{"SHA256", sum}}, Comment: fmt.Sprintf("layer %d", i+1)}
			pkgs[path] = found
		}); err != nil {
			return inventory{}, err
		}
	}
	var inv inventory
	for i, p := range order {
		f := files[p]
		f.SPDXID = fmt.Sprintf("SPDXRef-File-%d", i+1)
		inv.files = append(inv.files, f)
		inv.packages = append(inv.packages, pkgs[p]...)
	}
	return inv, nil
}

// BuildSBOM lists every regular file in the image's layers with its
// SHA-256, and the packages they hold (Go modules from Go binaries' build
// info, Debian packages from dpkg's status, Python distributions, npm
// packages, each with its purl), in an SPDX 2.3 JSON document, and stores
// it as an artifact whose subject is the image.
func BuildSBOM(ctx context.Context, image Graph, name string, created time.Time, store BlobStore) (Graph, error) {
	inv, err := takeInventory(ctx, image, store)
	if err != nil {
		return Graph{}, err
	}
	return spdxSBOM(ctx, image, name, created, inv, store)
}

// BuildSBOMs stores the image's SBOM in both formats scanners read, from
// one pass over its layers: SPDX 2.3 (BuildSBOM) and CycloneDX 1.5.
func BuildSBOMs(ctx context.Context, image Graph, name string, created time.Time, store BlobStore) ([]Graph, error) {
	inv, err := takeInventory(ctx, image, store)
	if err != nil {
		return nil, err
	}
	spdx, err := spdxSBOM(ctx, image, name, created, inv, store)
	if err != nil {
		return nil, err
	}
	cdx, err := cycloneDXSBOM(ctx, image, name, created, inv, store)
	if err != nil {
		return nil, err
	}
	return []Graph{spdx, cdx}, nil
}

func spdxSBOM(ctx context.Context, image Graph, name string, created time.Time, inv inventory, store BlobStore) (Graph, error) {
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
	for i, p := range inv.packages {
		id := fmt.Sprintf("SPDXRef-Package-%d", i+1)
		doc.Packages = append(doc.Packages, spdxPackage{SPDXID: id, Name: p.Name, VersionInfo: p.Version, DownloadLocation: "NOASSERTION",
			PrimaryPurpose: "LIBRARY", SourceInfo: "read from " + p.Source, ExternalRefs: []spdxExtRef{{"PACKAGE-MANAGER", "purl", p.PURL}}})
		doc.Relationships = append(doc.Relationships, spdxRelation{"SPDXRef-Image", "CONTAINS", id})
	}
	for _, f := range inv.files {
		doc.Files = append(doc.Files, f)
		doc.Relationships = append(doc.Relationships, spdxRelation{"SPDXRef-Image", "CONTAINS", f.SPDXID})
	}
	return sbomArtifact(ctx, image, created, doc, MediaTypeSPDX, "sbom.spdx.json", store)
}

// sbomArtifact stores doc as the one file of an artifact of mediaType
// whose subject is the image.
func sbomArtifact(ctx context.Context, image Graph, created time.Time, doc any, mediaType, title string, store BlobStore) (Graph, error) {
	raw, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return Graph{}, err
	}
	tmp, err := os.CreateTemp("", "digestline-sbom-*.json")
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
		ArtifactType: mediaType,
		Files:        []ArtifactFile{{Path: tmp.Name(), Title: title, MediaType: mediaType}},
		Subject:      &subject,
		Created:      created,
	}, store)
}

// listLayer calls fn with the path and SHA-256 of every regular file in a
// layer, and the packages the file lists (metadata files and Go binaries
// are read whole for them, up to maxPackageFile).
func listLayer(ctx context.Context, store BlobReader, l v1.Descriptor, fn func(path, sum string, pkgs []Package)) error {
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
		p := "/" + strings.TrimPrefix(h.Name, "./")
		sum := sha256.New()
		head := make([]byte, 4)
		n, _ := io.ReadFull(tr, head)
		head = head[:n]
		sum.Write(head)
		var pkgs []Package
		if packageFile(p, head) && h.Size <= maxPackageFile {
			data, err := io.ReadAll(tr)
			if err != nil {
				return fmt.Errorf("read %s in layer %s: %w", h.Name, l.Digest, err)
			}
			sum.Write(data)
			pkgs = packagesIn(p, append(head, data...))
		} else if _, err := io.Copy(sum, tr); err != nil {
			return fmt.Errorf("read %s in layer %s: %w", h.Name, l.Digest, err)
		}
		fn(p, hex.EncodeToString(sum.Sum(nil)), pkgs)
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

// MediaTypeCycloneDX is the media type (and artifactType) of a CycloneDX
// JSON SBOM.
const MediaTypeCycloneDX = "application/vnd.cyclonedx+json"

// cycloneDX is the part of CycloneDX 1.5 JSON that digestline writes.
type cycloneDX struct {
	BOMFormat    string         `json:"bomFormat"`
	SpecVersion  string         `json:"specVersion"`
	SerialNumber string         `json:"serialNumber"`
	Version      int            `json:"version"`
	Metadata     cdxMetadata    `json:"metadata"`
	Components   []cdxComponent `json:"components"`
}

type cdxMetadata struct {
	Timestamp string       `json:"timestamp"`
	Tools     cdxTools     `json:"tools"`
	Component cdxComponent `json:"component"`
}

type cdxTools struct {
	Components []cdxComponent `json:"components"`
}

type cdxComponent struct {
	BOMRef     string        `json:"bom-ref,omitempty"`
	Type       string        `json:"type"`
	Name       string        `json:"name"`
	Version    string        `json:"version,omitempty"`
	Hashes     []cdxHash     `json:"hashes,omitempty"`
	PURL       string        `json:"purl,omitempty"`
	Properties []cdxProperty `json:"properties,omitempty"`
}

type cdxHash struct {
	Alg     string `json:"alg"`
	Content string `json:"content"`
}

type cdxProperty struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

func cycloneDXSBOM(ctx context.Context, image Graph, name string, created time.Time, inv inventory, store BlobStore) (Graph, error) {
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	// A serial number is a UUID: this one is derived from the image's
	// digest, so the same image has the same SBOM.
	h := image.Root.Digest.Encoded()
	doc := cycloneDX{
		BOMFormat: "CycloneDX", SpecVersion: "1.5", Version: 1,
		SerialNumber: fmt.Sprintf("urn:uuid:%s-%s-5%s-8%s-%s", h[0:8], h[8:12], h[13:16], h[17:20], h[20:32]),
		Metadata: cdxMetadata{Timestamp: created.UTC().Format(time.RFC3339),
			Tools:     cdxTools{Components: []cdxComponent{{Type: "application", Name: "digestline"}}},
			Component: cdxComponent{BOMRef: image.Root.Digest.String(), Type: "container", Name: name, Version: image.Root.Digest.String()}},
		Components: []cdxComponent{},
	}
	seen := map[string]bool{}
	for _, p := range inv.packages {
		if seen[p.PURL] { // one component per package, wherever it was found
			continue
		}
		seen[p.PURL] = true
		doc.Components = append(doc.Components, cdxComponent{BOMRef: p.PURL, Type: "library", Name: p.Name, Version: p.Version, PURL: p.PURL,
			Properties: []cdxProperty{{"digestline:source", p.Source}}})
	}
	for _, f := range inv.files { // every file too, as the SPDX one lists them
		doc.Components = append(doc.Components, cdxComponent{BOMRef: "file:" + f.FileName, Type: "file", Name: f.FileName,
			Hashes: []cdxHash{{"SHA-256", f.Checksums[0].Value}}, Properties: []cdxProperty{{"digestline:layer", f.Comment}}})
	}
	return sbomArtifact(ctx, image, created, doc, MediaTypeCycloneDX, "sbom.cdx.json", store)
}
