package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// ImageConfig is what a built image runs and how it is labelled.
type ImageConfig struct {
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	Labels     map[string]string
	Platform   v1.Platform
	// Created is the image's creation time and every file's mtime, so that the
	// same input gives the same digest. Zero means the Unix epoch.
	Created time.Time
	// Format is how layers are compressed and which media types are used.
	Format LayerFormat
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

// BuildImage builds a deterministic single-layer OCI image of dir and puts
// every blob (layer, config, manifest) into store. The same directory content
// and config give a byte-identical manifest on any machine: entries are
// sorted, owners and times normalized, and the gzip header fixed. The layer
// streams through a temporary file, so memory does not grow with its size.
func BuildImage(ctx context.Context, dir string, cfg ImageConfig, store BlobStore) (Graph, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return Graph{}, fmt.Errorf("build source: %w", err)
	}
	if !info.IsDir() {
		return Graph{}, fmt.Errorf("build source %s is not a directory", dir)
	}
	if err := cfg.Format.Validate(); err != nil {
		return Graph{}, err
	}
	created := cfg.Created.UTC()
	if created.IsZero() {
		created = time.Unix(0, 0).UTC()
	}

	layer, diffID, err := writeLayer(ctx, dir, created, cfg.Format, store)
	if err != nil {
		return Graph{}, err
	}

	config := v1.Image{
		Created:  &created,
		Platform: cfg.Platform,
		Config: v1.ImageConfig{
			Entrypoint: cfg.Entrypoint,
			Cmd:        cfg.Cmd,
			Env:        cfg.Env,
			WorkingDir: cfg.WorkingDir,
			Labels:     cfg.Labels,
		},
		RootFS: v1.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
	}
	configDesc, err := putJSON(ctx, store, cfg.Format.ConfigMediaType(), config)
	if err != nil {
		return Graph{}, fmt.Errorf("%w: put config: %w", ErrStore, err)
	}

	manifest := v1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: cfg.Format.ManifestMediaType(),
		Config:    configDesc,
		Layers:    []v1.Descriptor{layer},
	}
	manifestDesc, err := putJSON(ctx, store, cfg.Format.ManifestMediaType(), manifest)
	if err != nil {
		return Graph{}, fmt.Errorf("%w: put manifest: %w", ErrStore, err)
	}
	manifestDesc.Platform = &cfg.Platform
	return Graph{Root: manifestDesc, Descriptors: []v1.Descriptor{configDesc, layer, manifestDesc}}, nil
}

// putJSON stores v as JSON and returns its descriptor.
func putJSON(ctx context.Context, store BlobStore, mediaType string, v any) (v1.Descriptor, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return v1.Descriptor{}, err
	}
	desc := v1.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
	return desc, store.Put(ctx, desc, bytes.NewReader(b))
}

// writeLayer tars and compresses dir into a temporary file, hashing the
// compressed stream (the layer digest) and the tar stream (the diff id) as it
// goes, then puts the file into store.
func writeLayer(ctx context.Context, dir string, mtime time.Time, f LayerFormat, store BlobStore) (v1.Descriptor, digest.Digest, error) {
	tmp, err := os.CreateTemp("", "digestline-layer-*")
	if err != nil {
		return v1.Descriptor{}, "", fmt.Errorf("layer temp file: %w", err)
	}
	defer func() { _ = tmp.Close(); _ = os.Remove(tmp.Name()) }()

	blobHash, diffHash := sha256.New(), sha256.New()
	counter := &countingWriter{w: io.MultiWriter(tmp, blobHash)}
	zw, err := f.compressor(counter)
	if err != nil {
		return v1.Descriptor{}, "", err
	}
	if err := WriteTar(ctx, io.MultiWriter(zw, diffHash), dir, mtime); err != nil {
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
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return v1.Descriptor{}, "", err
	}
	if err := store.Put(ctx, desc, tmp); err != nil {
		return v1.Descriptor{}, "", fmt.Errorf("%w: put layer: %w", ErrStore, err)
	}
	return desc, digest.NewDigest(digest.SHA256, diffHash), nil
}

// WriteTar writes dir as a reproducible tar stream: entries in lexical order,
// owners zeroed, every mtime set to mtime, no access or change times.
func WriteTar(ctx context.Context, w io.Writer, dir string, mtime time.Time) error {
	tw := tar.NewWriter(w)
	if err := writeTree(ctx, tw, dir, mtime); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("close tar: %w", err)
	}
	return nil
}

func writeTree(ctx context.Context, tw *tar.Writer, dir string, mtime time.Time) error {
	// One copy buffer for the whole tree: a tree of many small files would
	// otherwise allocate (and make the GC reclaim) one per file.
	buf := make([]byte, 256<<10)
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("stat %s: %w", path, err)
		}
		var link string
		switch {
		case info.Mode().IsRegular(), info.IsDir():
		case info.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(path); err != nil {
				return fmt.Errorf("read link %s: %w", path, err)
			}
		default:
			return fmt.Errorf("%s: unsupported file type %s (only files, directories and symlinks go into a layer)", rel, info.Mode().Type())
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return fmt.Errorf("tar header %s: %w", rel, err)
		}
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = mtime, time.Time{}, time.Time{}
		hdr.Mode &= 0o7777
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("tar %s: %w", rel, err)
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("open %s: %w", rel, err)
		}
		defer f.Close()
		// Hide *os.File's WriterTo so CopyBuffer uses buf.
		if _, err := io.CopyBuffer(tw, struct{ io.Reader }{f}, buf); err != nil {
			return fmt.Errorf("tar %s: %w", rel, err)
		}
		return nil
	})
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
