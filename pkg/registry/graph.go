package registry

import (
	"context"
	"io"

	"github.com/digestline/digestline/pkg/oci"
	"github.com/opencontainers/go-digest"
)

// Graph reads the artifact at d from the repository: its manifests,
// walked from the root and each checked against its digest, and — with
// referrers — every artifact attached to it and to those in turn (a
// signature of its SBOM), subjects before what refers to them, found
// through the referrers API or the fallback tag. The source it returns
// reads those manifests and blobs from the registry as they are asked
// for: pushing the graph elsewhere copies registry to registry, through
// no disk.
func (r *Repo) Graph(ctx context.Context, d digest.Digest, referrers bool) (oci.Graph, oci.BlobReader, error) {
	_, root, err := r.GetManifest(ctx, d.String()) // checked against d
	if err != nil {
		return oci.Graph{}, nil, err
	}
	g, err := oci.Walk(ctx, r.Manifests(), root)
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
