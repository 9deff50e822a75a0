package oci

import (
	"bytes"
	"context"
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
func BuildArtifact(ctx context.Context, cfg ArtifactConfig, store BlobStore) (Graph, error) {
	if cfg.ArtifactType == "" {
		return Graph{}, fmt.Errorf("an artifact needs an artifactType, e.g. application/vnd.example.config.v1+json")
	}
	// The config and the files go into the store at once: each is a round
	// trip or more to the bus's store.
	empty := EmptyDescriptor()
	layers := make([]v1.Descriptor, len(cfg.Files))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	g.Go(func() error {
		if err := store.Put(gctx, empty, bytes.NewReader(emptyJSON)); err != nil {
			return fmt.Errorf("%w: put empty config: %w", ErrStore, err)
		}
		return nil
	})
	for i, f := range cfg.Files {
		g.Go(func() (err error) {
			layers[i], err = putFile(gctx, store, f)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return Graph{}, err
	}
	config := empty
	config.Data = nil // the manifest stays small; the blob is in the store
	if cfg.ConfigMediaType != "" {
		config.MediaType = cfg.ConfigMediaType
	}
	blobs := append([]v1.Descriptor{config}, layers...)
	if len(layers) == 0 {
		layers = []v1.Descriptor{empty}
	}
	created := cfg.Created.UTC()
	if created.IsZero() {
		created = time.Unix(0, 0).UTC()
	}
	annotations := map[string]string{v1.AnnotationCreated: created.Format(time.RFC3339)}
	for k, v := range cfg.Annotations {
		annotations[k] = v
	}
	manifest := v1.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    v1.MediaTypeImageManifest,
		ArtifactType: cfg.ArtifactType,
		Config:       config,
		Layers:       layers,
		Subject:      cfg.Subject,
		Annotations:  annotations,
	}
	desc, err := putJSON(ctx, store, v1.MediaTypeImageManifest, manifest)
	if err != nil {
		return Graph{}, fmt.Errorf("%w: put artifact manifest: %w", ErrStore, err)
	}
	desc.ArtifactType = cfg.ArtifactType
	for i := range blobs {
		blobs[i].Data = nil
	}
	return Graph{Root: desc, Descriptors: append(blobs, desc)}, nil
}

// putFile streams one file into store, hashing it first.
func putFile(ctx context.Context, store BlobStore, f ArtifactFile) (v1.Descriptor, error) {
	var fh io.ReadSeeker = bytes.NewReader(f.Content)
	if f.Content == nil {
		file, err := os.Open(f.Path)
		if err != nil {
			return v1.Descriptor{}, fmt.Errorf("artifact file: %w", err)
		}
		defer file.Close()
		fh = file
	}
	h := digest.SHA256.Digester()
	n, err := io.Copy(h.Hash(), fh)
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("read %s: %w", f.Path, err)
	}
	title := f.Title
	if title == "" {
		title = filepath.Base(f.Path)
	}
	mediaType := f.MediaType
	if mediaType == "" {
		mediaType = "application/octet-stream"
	}
	annotations := map[string]string{v1.AnnotationTitle: title}
	for k, v := range f.Annotations {
		annotations[k] = v
	}
	d := v1.Descriptor{MediaType: mediaType, Digest: h.Digest(), Size: n, Annotations: annotations}
	if _, err := fh.Seek(0, io.SeekStart); err != nil {
		return v1.Descriptor{}, err
	}
	if err := store.Put(ctx, d, fh); err != nil {
		return v1.Descriptor{}, fmt.Errorf("%w: put %s: %w", ErrStore, title, err)
	}
	return d, nil
}
