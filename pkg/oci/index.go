package oci

import (
	"context"
	"fmt"

	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// BuildIndex puts an image index of the per-platform images into store and
// returns the graph of the whole: every child's blobs and manifest, the index
// last. Each image's root descriptor must carry its platform.
func BuildIndex(ctx context.Context, images []Graph, f LayerFormat, annotations map[string]string, store BlobStore) (Graph, error) {
	if len(images) == 0 {
		return Graph{}, fmt.Errorf("an index needs at least one image")
	}
	index := v1.Index{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   f.IndexMediaType(),
		Annotations: annotations,
	}
	var blobs, manifests []v1.Descriptor
	seen := map[string]bool{}
	for _, img := range images {
		if img.Root.Platform == nil {
			return Graph{}, fmt.Errorf("image %s has no platform", img.Root.Digest)
		}
		index.Manifests = append(index.Manifests, img.Root)
		for _, d := range img.Descriptors {
			if seen[d.Digest.String()] {
				continue // layers shared between platforms are pushed once
			}
			seen[d.Digest.String()] = true
			if IsManifest(d.MediaType) {
				manifests = append(manifests, d)
			} else {
				blobs = append(blobs, d)
			}
		}
	}
	desc, err := putJSON(ctx, store, f.IndexMediaType(), index)
	if err != nil {
		return Graph{}, fmt.Errorf("%w: put index: %w", ErrStore, err)
	}
	return Graph{Root: desc, Descriptors: append(append(blobs, manifests...), desc)}, nil
}
