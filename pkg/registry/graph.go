package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// Graph reads the artifact at d from the repository: its manifests,
// walked from the root and each checked against its digest, and — with
// referrers — every artifact attached to it and to those in turn (a
// signature of its SBOM), subjects before what refers to them, found
// through the referrers API or the fallback tag, and what cosign keeps
// under the root's sha256-<hex>.sig, .att and .sbom tags (its legacy
// layout): such an artifact's root descriptor names its tag in
// org.opencontainers.image.ref.name, and a push tags it so. The source it returns
// reads those manifests and blobs from the registry as they are asked
// for: pushing the graph elsewhere copies registry to registry, through
// no disk.
func (r *Repo) Graph(ctx context.Context, d digest.Digest, referrers bool) (oci.Graph, oci.BlobReader, error) {
	body, root, err := r.GetManifest(ctx, d.String()) // checked against d
	if err != nil {
		return oci.Graph{}, nil, err
	}
	g, err := oci.Walk(ctx, oci.InHand(map[digest.Digest][]byte{root.Digest: body}, r.Manifests()), root)
	if err != nil {
		return oci.Graph{}, nil, err
	}
	src := graphSource{repo: r, manifests: map[digest.Digest]bool{}}
	for _, m := range g.Manifests() {
		src.manifests[m.Digest] = true
	}
	if !referrers {
		return g, src, nil
	}
	seen := map[digest.Digest]bool{root.Digest: true}
	tagged, err := cosignTagged(ctx, r, root.Digest)
	if err != nil {
		return oci.Graph{}, nil, err
	}
	for _, t := range tagged {
		if seen[t.Root.Digest] {
			continue
		}
		seen[t.Root.Digest] = true
		for _, m := range t.Manifests() {
			src.manifests[m.Digest] = true
		}
		g.Referrers = append(g.Referrers, t)
	}
	for queue := []digest.Digest{root.Digest}; len(queue) > 0; queue = queue[1:] {
		listed, err := r.Referrers(ctx, queue[0])
		if err != nil {
			return oci.Graph{}, nil, err
		}
		for _, ref := range listed {
			if seen[ref.Digest] {
				continue
			}
			seen[ref.Digest] = true
			rg, err := oci.Walk(ctx, r.Manifests(), ref)
			if err != nil {
				return oci.Graph{}, nil, err
			}
			for _, m := range rg.Manifests() {
				src.manifests[m.Digest] = true
			}
			g.Referrers = append(g.Referrers, rg)
			queue = append(queue, ref.Digest)
		}
	}
	return g, src, nil
}

// Tree is the manifests of the artifact root (a descriptor the registry
// gave, by HeadManifest) and of everything attached to it, nested, as
// Graph finds them (the referrers API, the fallback tag, cosign's tags),
// without the blobs: what deleting root with its tree deletes. An image
// manifest's children are blobs, so only an index is read for its own;
// the root first, then each referrer, subjects before what refers to
// them, each after its own children. Each TreeNode names the tag an
// artifact is kept under (cosign's), if any.
func (r *Repo) Tree(ctx context.Context, root v1.Descriptor) ([]TreeNode, error) {
	var nodes []TreeNode
	seen := map[digest.Digest]bool{}
	add := func(desc v1.Descriptor, tag string) error {
		kids, err := r.childManifests(ctx, desc)
		if err != nil {
			return err
		}
		for _, k := range kids {
			if !seen[k.Digest] {
				seen[k.Digest] = true
				nodes = append(nodes, TreeNode{Descriptor: k, Parent: desc.Digest})
			}
		}
		seen[desc.Digest] = true
		nodes = append(nodes, TreeNode{Descriptor: desc, Tag: tag})
		return nil
	}
	if err := add(root, ""); err != nil {
		return nil, err
	}
	for _, suffix := range cosignSuffixes {
		tag := FallbackTag(root.Digest) + suffix
		if !r.MayHave(tag) {
			continue
		}
		desc, ok, err := r.HeadManifest(ctx, tag)
		if err != nil {
			return nil, err
		}
		if ok && !seen[desc.Digest] {
			if err := add(desc, tag); err != nil {
				return nil, err
			}
		}
	}
	for queue := []digest.Digest{root.Digest}; len(queue) > 0; queue = queue[1:] {
		listed, err := r.Referrers(ctx, queue[0])
		if err != nil {
			return nil, err
		}
		for _, ref := range listed {
			if seen[ref.Digest] {
				continue
			}
			if err := add(ref, ""); err != nil {
				return nil, err
			}
			queue = append(queue, ref.Digest)
		}
	}
	return nodes, nil
}

// TreeNode is one manifest of a Tree: Parent is the index that lists it
// (a platform manifest), and Tag the tag it is kept under (cosign's).
type TreeNode struct {
	v1.Descriptor
	Parent digest.Digest
	Tag    string
}

// childManifests are the manifests an index lists (none for an image
// manifest, whose children are blobs), read from the registry.
func (r *Repo) childManifests(ctx context.Context, desc v1.Descriptor) ([]v1.Descriptor, error) {
	if desc.MediaType != v1.MediaTypeImageIndex && desc.MediaType != oci.MediaTypeDockerManifestList {
		return nil, nil
	}
	body, _, err := r.GetManifest(ctx, desc.Digest.String())
	if err != nil {
		return nil, err
	}
	var idx v1.Index
	if err := json.Unmarshal(body, &idx); err != nil {
		return nil, &failure.Error{Class: failure.Schema, Err: fmt.Errorf("index %s: %w", desc.Digest, err), Hint: "the registry holds an index that does not parse"}
	}
	var out []v1.Descriptor
	for _, m := range idx.Manifests {
		if oci.IsManifest(m.MediaType) {
			out = append(out, m)
		}
	}
	return out, nil
}

// graphSource reads a graph from a registry: its manifests through the
// manifests endpoint, every other blob through the blobs endpoint.
type graphSource struct {
	repo      *Repo
	manifests map[digest.Digest]bool
}

func (s graphSource) Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	if s.manifests[d] {
		return s.repo.Manifests().Open(ctx, d)
	}
	return s.repo.Open(ctx, d)
}

// cosignSuffixes are the tags cosign's legacy layout keeps an image's
// signatures, attestations and SBOM under: sha256-<hex> and one of these.
var cosignSuffixes = []string{".sig", ".att", ".sbom"}

// cosignTagged reads the artifacts cosign keeps under subject's tags, each
// with its tag in its root's ref.name annotation. The tags are asked for
// at once.
func cosignTagged(ctx context.Context, r *Repo, subject digest.Digest) ([]oci.Graph, error) {
	found := make([]oci.Graph, len(cosignSuffixes))
	eg, ectx := errgroup.WithContext(ctx)
	for i, suffix := range cosignSuffixes {
		tag := FallbackTag(subject) + suffix
		if !r.MayHave(tag) {
			continue
		}
		eg.Go(func() error {
			d, ok, err := r.HeadManifest(ectx, tag)
			if err != nil || !ok {
				return err
			}
			g, err := oci.Walk(ectx, r.Manifests(), d)
			if err != nil {
				return err
			}
			g.Root.Annotations = map[string]string{v1.AnnotationRefName: tag}
			found[i] = g
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	return slices.DeleteFunc(found, func(g oci.Graph) bool { return g.Root.Digest == "" }), nil
}

// TaggedAs is the tag an attached artifact is kept under instead of
// listed as a referrer (cosign's legacy layout), "" for a referrer.
func TaggedAs(g oci.Graph) string { return g.Root.Annotations[v1.AnnotationRefName] }
