package builder

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// LayoutPrefix names a base image in an OCI layout: oci:PATH.
const LayoutPrefix = "oci:"

// maxConfigSize bounds a base image's config.
const maxConfigSize = 8 << 20

// ResolveBase finds the base image ref names — scratch (or ""), an OCI layout
// (oci:PATH), or any registry reference by tag or digest — picks the manifest
// for platform from an index, and copies the base's layers into store (each
// verified against its digest as it streams) so the result can be pushed
// anywhere. It returns nil for scratch.
func ResolveBase(ctx context.Context, ref string, platform v1.Platform, reg *registry.Client, store oci.BlobStore) (*oci.BaseImage, error) {
	if ref == "" || ref == "scratch" {
		return nil, nil
	}
	var (
		src       oci.BlobReader // blobs: config and layers
		manifests oci.BlobReader // manifests by digest
		root      v1.Descriptor
	)
	if path, ok := strings.CutPrefix(ref, LayoutPrefix); ok {
		layout, err := oci.OpenLayout(path)
		if err != nil {
			return nil, err
		}
		g, err := layout.Graph(ctx)
		if err != nil {
			return nil, err
		}
		src, manifests, root = layout, layout, g.Root
	} else {
		r, err := name.ParseReference(ref)
		if err != nil {
			return nil, fmt.Errorf("base %q: %w (want scratch, oci:PATH or registry/repository:tag|@digest)", ref, err)
		}
		repo, err := reg.Open(ctx, r.Context(), false)
		if err != nil {
			return nil, fmt.Errorf("base %s: %w", ref, err)
		}
		_, desc, err := repo.GetManifest(ctx, r.Identifier())
		if err != nil {
			return nil, fmt.Errorf("base %s: %w", ref, err)
		}
		src, manifests, root = repo, repo.Manifests(), desc
	}
	if oci.IsIndex(root.MediaType) {
		var err error
		if root, err = oci.PickPlatform(ctx, manifests, root, platform); err != nil {
			return nil, fmt.Errorf("base %s: %w", ref, err)
		}
	}
	raw, err := oci.ReadManifest(ctx, manifests, root)
	if err != nil {
		return nil, fmt.Errorf("base %s: %w", ref, err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil || m.Config.Digest == "" {
		return nil, fmt.Errorf("base %s: %s is not an image manifest", ref, root.Digest)
	}
	var config v1.Image
	if err := readBlobJSON(ctx, src, m.Config, &config); err != nil {
		return nil, fmt.Errorf("base %s config: %w", ref, err)
	}
	if len(config.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("base %s: %d layers but %d diff ids in its config", ref, len(m.Layers), len(config.RootFS.DiffIDs))
	}
	for _, l := range m.Layers {
		if err := oci.CopyBlob(ctx, store, src, l); err != nil {
			return nil, fmt.Errorf("base %s layer %s: %w", ref, l.Digest, err)
		}
	}
	return &oci.BaseImage{Name: ref, Digest: root.Digest, Manifest: m, Config: config}, nil
}

func readBlobJSON(ctx context.Context, src oci.BlobReader, d v1.Descriptor, v any) error {
	rc, err := src.Open(ctx, d.Digest)
	if err != nil {
		return err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxConfigSize+1))
	if err != nil {
		return err
	}
	if len(b) > maxConfigSize {
		return fmt.Errorf("larger than %d bytes", maxConfigSize)
	}
	if got := digest.FromBytes(b); got != d.Digest {
		return fmt.Errorf("content hashes to %s, not %s", got, d.Digest)
	}
	return json.Unmarshal(b, v)
}
