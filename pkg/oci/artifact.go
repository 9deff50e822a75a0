package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// EmptyJSON is the OCI empty descriptor: the config of an artifact that has
// none, and its only layer when it has no files.
var emptyJSON = []byte("{}")

// EmptyDescriptor returns the OCI empty descriptor, with its data inline.
func EmptyDescriptor() v1.Descriptor {
	return v1.Descriptor{MediaType: MediaTypeEmptyJSON, Digest: digest.FromBytes(emptyJSON), Size: int64(len(emptyJSON)), Data: emptyJSON}
}

// ArtifactFile is one file of an artifact.
type ArtifactFile struct {
	Path      string // read from here, unless Content is set
	Content   []byte // the file's bytes, when they are not in a file
	Title     string // org.opencontainers.image.title; default: the file's base name
	MediaType string // default application/octet-stream
	// Annotations are the layer's, beside its title (a signature, for one).
	Annotations map[string]string
}

// ArtifactConfig describes an OCI artifact: an image manifest whose
// artifactType says what it is and whose config is the empty descriptor.
type ArtifactConfig struct {
	ArtifactType string
	Files        []ArtifactFile
	Annotations  map[string]string
	// Subject, when set, attaches the artifact to another manifest (an SBOM
	// or signature to its image); registries list it as a referrer.
	Subject *v1.Descriptor
	// Created stamps org.opencontainers.image.created; zero means the epoch.
	Created time.Time
	// ConfigMediaType, when set, is the media type of the (empty) config
	// instead of the empty descriptor's: registries that list referrers by
	// their config's media type (older ones) then list the artifact by its
	// type, as cosign's signatures are.
	ConfigMediaType string
}

// BuildArtifact puts the files and the artifact manifest into store.
//
// Each file is hashed first, so the manifest is known before anything is
// stored; then the config, the files and the manifest go into the store at
// once, each a round trip or more to the bus's store. It returns when all
// are stored: until then nothing names the artifact (a failed build may
// leave a manifest without its files, which the next put of the same
// artifact completes).
func BuildArtifact(ctx context.Context, cfg ArtifactConfig, store BlobStore) (Graph, error) {
	if cfg.ArtifactType == "" {
		return Graph{}, fmt.Errorf("an artifact needs an artifactType, e.g. application/vnd.example.config.v1+json")
	}
	layers := make([]v1.Descriptor, len(cfg.Files))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i, f := range cfg.Files {
		g.Go(func() (err error) {
			layers[i], err = describeFile(f)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return Graph{}, err
	}
	empty := EmptyDescriptor()
	config := empty
	config.Data = nil // the manifest stays small; the blob is in the store
	if cfg.ConfigMediaType != "" {
		config.MediaType = cfg.ConfigMediaType
	}
	blobs := append([]v1.Descriptor{config}, layers...)
	if len(layers) == 0 {
		layers = []v1.Descriptor{empty} // with its data inline, as the image spec shows it
	}
	created := cfg.Created.UTC()
	if created.IsZero() {
		created = time.Unix(0, 0).UTC()
	}
	annotations := map[string]string{v1.AnnotationCreated: created.Format(time.RFC3339)}
	for k, v := range cfg.Annotations {
		annotations[k] = v
	}
	manifest, err := json.Marshal(v1.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    v1.MediaTypeImageManifest,
		ArtifactType: cfg.ArtifactType,
		Config:       config,
		Layers:       layers,
		Subject:      cfg.Subject,
		Annotations:  annotations,
	})
	if err != nil {
		return Graph{}, err
	}
	desc := v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: digest.FromBytes(manifest), Size: int64(len(manifest))}

	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(4)
	g.Go(func() error { return putBytes(gctx, store, empty, emptyJSON, "empty config") })
	for i, f := range cfg.Files {
		g.Go(func() error { return putFile(gctx, store, f, layers[i]) })
	}
	g.Go(func() error { return putBytes(gctx, store, desc, manifest, "artifact manifest") })
	if err := g.Wait(); err != nil {
		return Graph{}, err
	}
	desc.ArtifactType = cfg.ArtifactType
	return Graph{Root: desc, Descriptors: append(blobs, desc)}, nil
}

// describeFile hashes one file: its layer descriptor, titled.
func describeFile(f ArtifactFile) (v1.Descriptor, error) {
	fh, closeFile, err := openFile(f)
	if err != nil {
		return v1.Descriptor{}, err
	}
	defer closeFile()
	h := digest.SHA256.Digester()
	n, err := io.Copy(h.Hash(), fh)
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("read %s: %w", f.Path, err)
	}
	mediaType := f.MediaType
	if mediaType == "" {
		mediaType = "application/octet-stream"
	}
	annotations := map[string]string{v1.AnnotationTitle: title(f)}
	for k, v := range f.Annotations {
		annotations[k] = v
	}
	return v1.Descriptor{MediaType: mediaType, Digest: h.Digest(), Size: n, Annotations: annotations}, nil
}

// putFile streams one file, as describeFile described it (d), into store;
// the store checks it still is what was hashed.
func putFile(ctx context.Context, store BlobStore, f ArtifactFile, d v1.Descriptor) error {
	fh, closeFile, err := openFile(f)
	if err != nil {
		return err
	}
	defer closeFile()
	if err := store.Put(ctx, d, fh); err != nil {
		return fmt.Errorf("%w: put %s: %w", ErrStore, title(f), err)
	}
	return nil
}

// openFile reads an artifact file's bytes: its Content, else its Path.
func openFile(f ArtifactFile) (io.Reader, func(), error) {
	if f.Content != nil {
		return bytes.NewReader(f.Content), func() {}, nil
	}
	file, err := os.Open(f.Path)
	if err != nil {
		return nil, nil, fmt.Errorf("artifact file: %w", err)
	}
	return file, func() { _ = file.Close() }, nil
}

// title is a file's org.opencontainers.image.title.
func title(f ArtifactFile) string {
	if f.Title != "" {
		return f.Title
	}
	return filepath.Base(f.Path)
}
