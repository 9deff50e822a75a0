package registry

import (
	"bytes"
	"context"
	"io"
	"slices"

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
	g, err := oci.Walk(ctx, readManifest{d: root.Digest, body: body, rest: r.Manifests()}, root)
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

// readManifest serves a manifest already read, and the others from rest.
type readManifest struct {
	d    digest.Digest
	body []byte
	rest oci.BlobReader
}

func (m readManifest) Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	if d == m.d {
		return io.NopCloser(bytes.NewReader(m.body)), nil
	}
	return m.rest.Open(ctx, d)
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
