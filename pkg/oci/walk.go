package oci

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// MaxManifestSize bounds how much of a manifest is read: the distribution
// spec's recommended limit.
const MaxManifestSize = 4 << 20

// ReadManifest reads a manifest blob and checks it hashes to its descriptor.
func ReadManifest(ctx context.Context, src BlobReader, d v1.Descriptor) ([]byte, error) {
	rc, err := src.Open(ctx, d.Digest)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", d.Digest, err)
	}
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("manifest %s is larger than %d bytes", d.Digest, MaxManifestSize)
	}
	if got := d.Digest.Algorithm().FromBytes(b); got != d.Digest {
		return nil, fmt.Errorf("manifest %s: content hashes to %s", d.Digest, got)
	}
	return b, nil
}

// Children parses a manifest or index and returns the descriptors it points
// to: for an image manifest its config then layers, for an index its manifests.
func Children(mediaType string, b []byte) ([]v1.Descriptor, error) {
	if IsIndex(mediaType) {
		var idx v1.Index
		if err := json.Unmarshal(b, &idx); err != nil {
			return nil, fmt.Errorf("parse index: %w", err)
		}
		return idx.Manifests, nil
	}
	var m v1.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parse manifest: %w", err)
	}
	if m.Config.Digest == "" {
		return nil, fmt.Errorf("manifest has no config descriptor")
	}
	return append([]v1.Descriptor{m.Config}, m.Layers...), nil
}

// Walk reads the graph rooted at root from src, checking each manifest's
// digest as it goes. Blobs are listed, not read.
func Walk(ctx context.Context, src BlobReader, root v1.Descriptor) (Graph, error) {
	g := Graph{Root: root}
	seen := map[string]bool{}
	var visit func(d v1.Descriptor) error
	visit = func(d v1.Descriptor) error {
		b, err := ReadManifest(ctx, src, d)
		if err != nil {
			return err
		}
		children, err := Children(d.MediaType, b)
		if err != nil {
			return fmt.Errorf("%s: %w", d.Digest, err)
		}
		for _, c := range children {
			if seen[c.Digest.String()] {
				continue
			}
			seen[c.Digest.String()] = true
			if IsManifest(c.MediaType) {
				if err := visit(c); err != nil {
					return err
				}
				continue
			}
			g.Descriptors = append(g.Descriptors, c)
		}
		g.Descriptors = append(g.Descriptors, d)
		return nil
	}
	if err := visit(root); err != nil {
		return Graph{}, err
	}
	// Blobs first, then manifests children-first: the push order.
	g.Descriptors = append(g.Blobs(), g.Manifests()...)
	return g, nil
}
