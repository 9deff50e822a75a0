package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Layout is an OCI image layout directory (oci-layout, index.json,
// blobs/<alg>/<hex>), used to export a build and to import one to push.
type Layout struct {
	dir string
}

// CreateLayout makes dir an OCI image layout (idempotent) and opens it.
func CreateLayout(dir string) (*Layout, error) {
	if err := os.MkdirAll(filepath.Join(dir, v1.ImageBlobsDir, string(digest.SHA256)), 0o755); err != nil {
		return nil, fmt.Errorf("create layout %s: %w", dir, err)
	}
	marker, err := json.Marshal(v1.ImageLayout{Version: v1.ImageLayoutVersion})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, v1.ImageLayoutFile), marker, 0o644); err != nil {
		return nil, fmt.Errorf("create layout %s: %w", dir, err)
	}
	return &Layout{dir: dir}, nil
}

// OpenLayout opens an existing OCI image layout.
func OpenLayout(dir string) (*Layout, error) {
	b, err := os.ReadFile(filepath.Join(dir, v1.ImageLayoutFile))
	if err != nil {
		return nil, fmt.Errorf("%s is not an OCI image layout (run 'digestline build' first, or pass the layout path): %w", dir, err)
	}
	var marker v1.ImageLayout
	if err := json.Unmarshal(b, &marker); err != nil || marker.Version != v1.ImageLayoutVersion {
		return nil, fmt.Errorf("%s: unsupported oci-layout %q", dir, b)
	}
	return &Layout{dir: dir}, nil
}

func (l *Layout) blobPath(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", err
	}
	return filepath.Join(l.dir, v1.ImageBlobsDir, d.Algorithm().String(), d.Encoded()), nil
}

// Open implements BlobReader.
func (l *Layout) Open(_ context.Context, d digest.Digest) (io.ReadCloser, error) {
	p, err := l.blobPath(d)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s in layout %s: %w", d, l.dir, ErrBlobNotFound)
	}
	return f, err
}

// Put implements BlobStore: it writes through a temporary file, checks the
// content against desc, and renames it into place.
func (l *Layout) Put(_ context.Context, desc v1.Descriptor, r io.Reader) error {
	p, err := l.blobPath(desc.Digest)
	if err != nil {
		return err
	}
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return err
	}
	defer func() { _ = tmp.Close(); _ = os.Remove(tmp.Name()) }()
	v := desc.Digest.Verifier()
	n, err := io.Copy(io.MultiWriter(tmp, v), r)
	if err != nil {
		return fmt.Errorf("write blob %s: %w", desc.Digest, err)
	}
	if n != desc.Size || !v.Verified() {
		return fmt.Errorf("blob %s: content does not match its descriptor (%d bytes, want %d)", desc.Digest, n, desc.Size)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}

// SetRoot records root in index.json as the layout's only image, named ref.
func (l *Layout) SetRoot(root v1.Descriptor, ref string) error {
	return l.SetGraph(Graph{Root: root}, ref)
}

// SetGraph records g's root, named ref, and the roots of its referrers in
// index.json, so tools that read layouts (oras, skopeo, crane) see them all.
func (l *Layout) SetGraph(g Graph, ref string) error {
	root := g.Root
	if ref != "" {
		root.Annotations = map[string]string{v1.AnnotationRefName: ref}
	}
	manifests := []v1.Descriptor{root}
	for _, r := range g.Referrers {
		manifests = append(manifests, r.Root)
	}
	index := v1.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageIndex,
		Manifests: manifests,
	}
	b, err := json.MarshalIndent(index, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(l.dir, v1.ImageIndexFile), b, 0o644)
}

// Graph reads the layout's artifact: the one entry of index.json that is not
// attached to another (its root), with the entries whose subject is that
// root as its referrers.
func (l *Layout) Graph(ctx context.Context) (Graph, error) {
	b, err := os.ReadFile(filepath.Join(l.dir, v1.ImageIndexFile))
	if err != nil {
		return Graph{}, fmt.Errorf("read index.json of %s: %w", l.dir, err)
	}
	var index v1.Index
	if err := json.Unmarshal(b, &index); err != nil {
		return Graph{}, fmt.Errorf("parse index.json of %s: %w", l.dir, err)
	}
	var roots []Graph
	subjects := map[string]string{} // referrer digest → subject digest
	for _, d := range index.Manifests {
		d.Annotations = nil
		g, err := Walk(ctx, l, d)
		if err != nil {
			return Graph{}, err
		}
		if mb, err := ReadManifest(ctx, l, d); err == nil {
			var m v1.Manifest
			if json.Unmarshal(mb, &m) == nil && m.Subject != nil {
				subjects[d.Digest.String()] = m.Subject.Digest.String()
			}
		}
		roots = append(roots, g)
	}
	var root *Graph
	for i := range roots {
		if _, attached := subjects[roots[i].Root.Digest.String()]; !attached {
			if root != nil {
				return Graph{}, fmt.Errorf("%s holds several images (%s, %s); digestline pushes a layout with exactly one", l.dir, root.Root.Digest, roots[i].Root.Digest)
			}
			root = &roots[i]
		}
	}
	if root == nil {
		return Graph{}, fmt.Errorf("%s holds no image (index.json is empty or every entry is attached to another)", l.dir)
	}
	for _, g := range roots {
		if subjects[g.Root.Digest.String()] == root.Root.Digest.String() {
			root.Referrers = append(root.Referrers, g)
		}
	}
	return *root, nil
}
