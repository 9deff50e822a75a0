package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// AnnotationLayerName names the layer rule a layer was built from.
const AnnotationLayerName = "dev.digestline.layer"

// ImageConfig is what a built image runs, how it is labelled, how its files
// split into layers, and how those are encoded.
type ImageConfig struct {
	Entrypoint   []string
	Cmd          []string
	Env          []string
	WorkingDir   string
	User         string
	ExposedPorts []string // e.g. 8080/tcp
	Labels       map[string]string
	// Annotations go on the manifest; org.opencontainers.image.created is
	// added from Created unless given.
	Annotations map[string]string
	Platform    v1.Platform
	// Created is the image's creation time and every file's mtime, so that the
	// same input gives the same digest. Zero means the Unix epoch.
	Created time.Time
	// Layers split the files: each rule's matches form a layer, in order, and
	// the files no rule matches form the last one. Empty layers are left out.
	Layers []LayerRule
	// Ignore leaves matching files and directories out of the image.
	Ignore []string
	// Format is how layers are compressed and which media types are used.
	Format LayerFormat
	// Base is the image the new layers go on top of; nil means scratch. Its
	// blobs must already be in the store the image is built into.
	Base *BaseImage
}

// BaseImage is a resolved base: its name as the user gave it, its manifest's
// digest, and the manifest and config themselves.
type BaseImage struct {
	Name     string
	Digest   digest.Digest
	Manifest v1.Manifest
	Config   v1.Image
}

// ParsePlatform parses os/arch[/variant]; empty means linux/amd64.
func ParsePlatform(s string) (v1.Platform, error) {
	if s == "" {
		return v1.Platform{OS: "linux", Architecture: "amd64"}, nil
	}
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return v1.Platform{}, fmt.Errorf("platform %q: want os/arch[/variant], e.g. linux/amd64", s)
	}
	p := v1.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

// BuildImage builds a deterministic OCI image of dir and puts every blob
// (layers, config, manifest) into store. The same directory content and
// config give a byte-identical manifest on any machine: entries are sorted,
// owners and times normalized, and compression headers fixed. Layers stream
// through temporary files, so memory does not grow with their size.
func BuildImage(ctx context.Context, dir string, cfg ImageConfig, store BlobStore) (Graph, error) {
	if err := cfg.Format.Validate(); err != nil {
		return Graph{}, err
	}
	info, err := os.Stat(dir)
	if err != nil {
		return Graph{}, fmt.Errorf("build source: %w", err)
	}
	if !info.IsDir() {
		return Graph{}, fmt.Errorf("build source %s is not a directory", dir)
	}
	created := cfg.Created.UTC()
	if created.IsZero() {
		created = time.Unix(0, 0).UTC()
	}
	entries, err := scanTree(ctx, dir, cfg.Ignore, cfg.Layers)
	if err != nil {
		return Graph{}, err
	}

	layers, diffIDs, err := writeLayers(ctx, dir, entries, created, cfg, store)
	if err != nil {
		return Graph{}, err
	}

	config := imageConfig(cfg, created)
	if cfg.Base != nil {
		if len(config.History) > 0 { // tools pair history entries with layers: keep them paired
			for range layers {
				config.History = append(config.History, v1.History{Created: &created, CreatedBy: "digestline build"})
			}
		}
		layers = append(baseLayers(cfg.Base.Manifest.Layers, cfg.Format), layers...)
	}
	config.RootFS.DiffIDs = append(slices.Clone(config.RootFS.DiffIDs), diffIDs...)
	configBody, configDesc, err := describeJSON(cfg.Format.ConfigMediaType(), config)
	if err != nil {
		return Graph{}, err
	}

	annotations := map[string]string{v1.AnnotationCreated: created.Format(time.RFC3339)}
	if cfg.Base != nil {
		annotations[v1.AnnotationBaseImageName] = cfg.Base.Name
		annotations[v1.AnnotationBaseImageDigest] = cfg.Base.Digest.String()
	}
	for k, v := range cfg.Annotations {
		annotations[k] = v
	}
	if layers == nil {
		layers = []v1.Descriptor{} // an image of an empty tree has no layers, not null
	}
	manifest := v1.Manifest{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   cfg.Format.ManifestMediaType(),
		Config:      configDesc,
		Layers:      layers,
		Annotations: annotations,
	}
	manifestBody, manifestDesc, err := describeJSON(cfg.Format.ManifestMediaType(), manifest)
	if err != nil {
		return Graph{}, err
	}
	// The config and the manifest go into the store at once: a round trip apiece.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return putBytes(gctx, store, configDesc, configBody, "config") })
	g.Go(func() error { return putBytes(gctx, store, manifestDesc, manifestBody, "manifest") })
	if err := g.Wait(); err != nil {
		return Graph{}, err
	}
	manifestDesc.Platform = &cfg.Platform
	return Graph{Root: manifestDesc, Descriptors: append(append([]v1.Descriptor{configDesc}, layers...), manifestDesc)}, nil
}

// writeLayers writes the tree's layers, one per layer rule with files (in
// order) and one of the files no rule matches, and returns them with their
// diff ids.
func writeLayers(ctx context.Context, dir string, entries []treeEntry, created time.Time, cfg ImageConfig, store BlobStore) ([]v1.Descriptor, []digest.Digest, error) {
	var layers []v1.Descriptor
	var diffIDs []digest.Digest
	for k := 0; k <= len(cfg.Layers); k++ {
		sub := layerEntries(entries, k, len(cfg.Layers))
		if len(sub) == 0 {
			continue
		}
		layer, diffID, err := writeLayer(ctx, dir, sub, created, cfg.Format, store)
		if err != nil {
			return nil, nil, err
		}
		if k < len(cfg.Layers) && cfg.Layers[k].Name != "" {
			layer.Annotations = map[string]string{AnnotationLayerName: cfg.Layers[k].Name}
		}
		layers, diffIDs = append(layers, layer), append(diffIDs, diffID)
	}
	return layers, diffIDs, nil
}

// imageConfig is the new image's config: the base's (when there is one) with
// what cfg sets on top — entrypoint, cmd, user and workdir replace, env and
// labels add, ports join.
func imageConfig(cfg ImageConfig, created time.Time) v1.Image {
	var img v1.Image
	if cfg.Base != nil {
		img = cfg.Base.Config
		img.History = slices.Clone(img.History)
	}
	img.Created, img.Platform = &created, cfg.Platform
	img.RootFS.Type = "layers"
	c := &img.Config
	if cfg.Entrypoint != nil {
		c.Entrypoint, c.Cmd = cfg.Entrypoint, nil // a new entrypoint does not inherit the base's arguments
	}
	if cfg.Cmd != nil {
		c.Cmd = cfg.Cmd
	}
	c.Env = append(c.Env, cfg.Env...)
	if cfg.WorkingDir != "" {
		c.WorkingDir = cfg.WorkingDir
	}
	if cfg.User != "" {
		c.User = cfg.User
	}
	if len(cfg.Labels) > 0 && c.Labels == nil {
		c.Labels = map[string]string{}
	}
	for k, v := range cfg.Labels {
		c.Labels[k] = v
	}
	for p := range portSet(cfg.ExposedPorts) {
		if c.ExposedPorts == nil {
			c.ExposedPorts = map[string]struct{}{}
		}
		c.ExposedPorts[p] = struct{}{}
	}
	return img
}

// baseLayers returns the base's layer descriptors with media types in the
// new image's family: a Docker gzip layer and an OCI gzip layer are the same
// bytes, so only the label changes.
func baseLayers(layers []v1.Descriptor, f LayerFormat) []v1.Descriptor {
	out := make([]v1.Descriptor, len(layers))
	for i, l := range layers {
		l.MediaType = convertLayerType(l.MediaType, f.Docker)
		out[i] = l
	}
	return out
}

func convertLayerType(mt string, docker bool) string {
	pairs := [][2]string{
		{v1.MediaTypeImageLayerGzip, MediaTypeDockerLayerGzip},
		{v1.MediaTypeImageLayer, MediaTypeDockerLayer},
	}
	for _, p := range pairs {
		if docker && mt == p[0] {
			return p[1]
		}
		if !docker && mt == p[1] {
			return p[0]
		}
	}
	return mt
}

func portSet(ports []string) map[string]struct{} {
	if len(ports) == 0 {
		return nil
	}
	set := make(map[string]struct{}, len(ports))
	for _, p := range ports {
		if !strings.Contains(p, "/") {
			p += "/tcp"
		}
		set[p] = struct{}{}
	}
	return set
}

// putJSON stores v as JSON and returns its descriptor.
func putJSON(ctx context.Context, store BlobStore, mediaType string, v any) (v1.Descriptor, error) {
	b, desc, err := describeJSON(mediaType, v)
	if err != nil {
		return v1.Descriptor{}, err
	}
	return desc, store.Put(ctx, desc, bytes.NewReader(b))
}

// describeJSON is v in JSON and its descriptor.
func describeJSON(mediaType string, v any) ([]byte, v1.Descriptor, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	return b, v1.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}, nil
}

// putBytes puts b, described by desc, into store; what names the blob in an error.
func putBytes(ctx context.Context, store BlobStore, desc v1.Descriptor, b []byte, what string) error {
	if err := store.Put(ctx, desc, bytes.NewReader(b)); err != nil {
		return fmt.Errorf("%w: put %s: %w", ErrStore, what, err)
	}
	return nil
}

// writeLayer tars and compresses entries into memory (a temporary file past
// spillLimit), hashing the compressed stream (the layer digest) and the tar
// stream (the diff id) as it goes, then puts the layer into store.
func writeLayer(ctx context.Context, dir string, entries []treeEntry, mtime time.Time, f LayerFormat, store BlobStore) (v1.Descriptor, digest.Digest, error) {
	tmp := &spill{}
	defer tmp.close()

	blobHash, diffHash := sha256.New(), sha256.New()
	counter := &countingWriter{w: io.MultiWriter(tmp, blobHash)}
	zw, err := f.compressor(counter)
	if err != nil {
		return v1.Descriptor{}, "", err
	}
	if err := writeEntries(ctx, io.MultiWriter(zw, diffHash), dir, entries, mtime); err != nil {
		_ = zw.Close()
		return v1.Descriptor{}, "", err
	}
	if err := zw.Close(); err != nil {
		return v1.Descriptor{}, "", fmt.Errorf("close %s stream: %w", f.compression(), err)
	}
	desc := v1.Descriptor{
		MediaType: f.LayerMediaType(),
		Digest:    digest.NewDigest(digest.SHA256, blobHash),
		Size:      counter.n,
	}
	layer, err := tmp.reader()
	if err != nil {
		return v1.Descriptor{}, "", err
	}
	if err := store.Put(ctx, desc, layer); err != nil {
		return v1.Descriptor{}, "", fmt.Errorf("%w: put layer: %w", ErrStore, err)
	}
	return desc, digest.NewDigest(digest.SHA256, diffHash), nil
}

// WriteTar writes all of dir as a reproducible tar stream: entries in
// lexical order, owners zeroed, every mtime set to mtime, no access or change
// times.
func WriteTar(ctx context.Context, w io.Writer, dir string, mtime time.Time) error {
	entries, err := scanTree(ctx, dir, nil, nil)
	if err != nil {
		return err
	}
	return writeEntries(ctx, w, dir, entries, mtime)
}

// writeEntries writes entries (relative to dir) as a tar stream with
// normalized headers.
func writeEntries(ctx context.Context, w io.Writer, dir string, entries []treeEntry, mtime time.Time) error {
	tw := tar.NewWriter(w)
	// One copy buffer for the whole layer: a tree of many small files would
	// otherwise allocate (and make the GC reclaim) one per file. It is no
	// bigger than the largest file, so a tiny layer does not allocate 256 KiB.
	var largest int64
	for _, e := range entries {
		if e.info.Mode().IsRegular() {
			largest = max(largest, e.info.Size())
		}
	}
	buf := make([]byte, min(max(largest, 4<<10), 256<<10))
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(e.info, e.link)
		if err != nil {
			return fmt.Errorf("tar header %s: %w", e.rel, err)
		}
		hdr.Name = e.rel
		if e.info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = mtime, time.Time{}, time.Time{}
		hdr.Mode &= 0o7777
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("tar %s: %w", e.rel, err)
		}
		if e.info.Mode().IsRegular() {
			if err := copyFile(tw, filepath.Join(dir, filepath.FromSlash(e.rel)), e.info.Size(), buf); err != nil {
				return fmt.Errorf("tar %s: %w", e.rel, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("close tar: %w", err)
	}
	return nil
}

// copyFile copies exactly size bytes of the file at p: a file that changes
// size while it is read is an error, not a corrupt layer.
func copyFile(w io.Writer, p string, size int64, buf []byte) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.CopyBuffer(w, io.LimitReader(f, size), buf) // a LimitedReader has no WriterTo, so buf is used
	if err == nil && n != size {
		err = fmt.Errorf("file shrank from %d to %d bytes while it was read", size, n)
	}
	return err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
