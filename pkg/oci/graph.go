package oci

import (
	"fmt"
	"slices"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// MediaTypeEmptyJSON is the OCI empty descriptor's media type.
const MediaTypeEmptyJSON = "application/vnd.oci.empty.v1+json"

// Graph is an artifact's content: its root (an image manifest or an index)
// and every descriptor reachable from it, in push order — blobs first, then
// manifests children-first, the root last. Digests are identity: two graphs
// with the same root digest are the same artifact.
type Graph struct {
	Root        v1.Descriptor   `json:"root"`
	Descriptors []v1.Descriptor `json:"descriptors"`
	// Referrers are artifacts attached to Root (their subject), e.g. its SBOM.
	Referrers []Graph `json:"referrers,omitempty"`
}

// Blobs returns the descriptors that are not manifests (configs and layers).
func (g Graph) Blobs() []v1.Descriptor {
	return slices.DeleteFunc(slices.Clone(g.Descriptors), func(d v1.Descriptor) bool { return IsManifest(d.MediaType) })
}

// Manifests returns the manifest and index descriptors, children first.
func (g Graph) Manifests() []v1.Descriptor {
	return slices.DeleteFunc(slices.Clone(g.Descriptors), func(d v1.Descriptor) bool { return !IsManifest(d.MediaType) })
}

// Find returns the descriptor with digest d.
func (g Graph) Find(d digest.Digest) (v1.Descriptor, bool) {
	i := slices.IndexFunc(g.Descriptors, func(x v1.Descriptor) bool { return x.Digest == d })
	if i < 0 {
		return v1.Descriptor{}, false
	}
	return g.Descriptors[i], true
}

// Validate checks the graph is well formed: a valid root that is a manifest,
// listed last, and valid digests and sizes throughout.
func (g Graph) Validate() error {
	if !IsManifest(g.Root.MediaType) {
		return fmt.Errorf("graph root has media type %q, want an image manifest or index", g.Root.MediaType)
	}
	if len(g.Descriptors) == 0 || g.Descriptors[len(g.Descriptors)-1].Digest != g.Root.Digest {
		return fmt.Errorf("graph descriptors must end with the root %s", g.Root.Digest)
	}
	for i, d := range g.Descriptors {
		if err := d.Digest.Validate(); err != nil {
			return fmt.Errorf("descriptor %d: %w", i, err)
		}
		if d.Size < 0 {
			return fmt.Errorf("descriptor %d (%s): negative size", i, d.Digest)
		}
	}
	for _, r := range g.Referrers {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("referrer %s: %w", r.Root.Digest, err)
		}
	}
	return nil
}

// IsManifest reports whether a media type is an image manifest or index, OCI
// or Docker v2.2.
func IsManifest(mediaType string) bool {
	switch mediaType {
	case v1.MediaTypeImageManifest, v1.MediaTypeImageIndex,
		MediaTypeDockerManifest, MediaTypeDockerManifestList:
		return true
	}
	return false
}

// IsIndex reports whether a media type lists other manifests.
func IsIndex(mediaType string) bool {
	return mediaType == v1.MediaTypeImageIndex || mediaType == MediaTypeDockerManifestList
}

// Docker v2.2 media types, read wherever OCI ones are.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar"
)
