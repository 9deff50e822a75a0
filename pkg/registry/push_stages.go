package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

func (p *pushRun) auth(ctx context.Context, r *events.StageReport) error {
	var from []string
	for _, b := range p.bases {
		from = append(from, b.repo)
	}
	repo, err := p.c.open(ctx, p.ref.Context(), true, from...)
	if err != nil {
		return err
	}
	p.repo = repo
	// Anonymous access sends nothing to prove: the registry is first
	// reached by the manifest check.
	r.Detail = p.ref.Context().RegistryStr() + " anonymous"
	if repo.proven {
		r.Detail = p.ref.Context().RegistryStr() + " credentials accepted"
	}
	return nil
}

func (p *pushRun) manifestCheck(ctx context.Context, r *events.StageReport) error {
	root := p.g.Root.Digest
	if tag, ok := p.ref.(name.Tag); ok {
		d, found, err := p.repo.HeadManifest(ctx, tag.TagStr())
		if err != nil {
			return err
		}
		if found && d.Digest == root {
			p.tagCurrent, p.manifestPresent = true, true
			r.Detail = fmt.Sprintf("%s present, tag %s → %s (nothing to push)", short(root), tag.TagStr(), short(root))
			return nil
		}
		if found {
			p.tagFound = d.Digest
		}
		// Refuse before uploading anything when the tag may not move; a
		// tag the pipeline orders may have moved within it, which the
		// tag update finds out.
		if err := p.opts.checkTag(tag.TagStr(), p.tagFound, root); err != nil && p.opts.mover == nil {
			return err
		}
	}
	found := p.opts.present
	if !found {
		var err error
		if _, found, err = p.repo.HeadManifest(ctx, root.String()); err != nil {
			return err
		}
	}
	p.manifestPresent = found
	if found {
		r.Detail = short(root) + " present"
	} else {
		r.Detail = short(root) + " absent"
	}
	return nil
}

func (p *pushRun) blobCheck(ctx context.Context, r *events.StageReport) error {
	if p.manifestPresent {
		return skip("manifest already in the registry")
	}
	blobs := p.g.Blobs()
	exists := make([]bool, len(blobs))
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(p.c.jobs)
	for i, b := range blobs {
		eg.Go(func() (err error) {
			exists[i], err = p.repo.HeadBlob(ectx, b.Digest)
			return err
		})
	}
	if err := eg.Wait(); err != nil {
		return err
	}
	p.missing = p.missing[:0]
	for i, b := range blobs {
		if exists[i] {
			p.arrived(b)
		} else {
			p.missing = append(p.missing, b)
		}
	}
	r.Total, r.Existing = len(blobs), len(blobs)-len(p.missing)
	p.mu.Lock()
	p.res.Existing = r.Existing
	p.mu.Unlock()
	return nil
}

// mount links missing blobs that another repository of the same registry
// holds — the layers of the image's base — instead of uploading them. A
// registry that refuses a mount is not an error: the blob is uploaded.
func (p *pushRun) mount(ctx context.Context, r *events.StageReport) error {
	if p.manifestPresent || len(p.missing) == 0 {
		return skip("nothing missing")
	}
	if len(p.bases) == 0 {
		return skip("no source repository known for %d missing blobs", len(p.missing))
	}
	from := map[digest.Digest]string{} // blob → repository that holds it
	for _, b := range p.bases {
		layers, err := p.baseLayers(ctx, b)
		if err != nil {
			return err
		}
		for _, d := range layers {
			from[d] = b.repo
		}
	}
	var still []v1.Descriptor
	for _, b := range p.missing {
		if repo, ok := from[b.Digest]; ok {
			mounted, session, err := p.repo.mountBlob(ctx, b.Digest, repo)
			if err != nil {
				return err
			}
			if mounted {
				p.arrived(b)
				r.Mounted++
				r.Bytes += b.Size
				continue
			}
			if session != nil {
				p.mu.Lock()
				p.mountSessions[b.Digest] = session
				p.mu.Unlock()
			}
		}
		still = append(still, b)
	}
	r.Total = len(p.missing)
	p.missing = still
	p.mu.Lock()
	p.res.Mounted += r.Mounted
	p.mu.Unlock()
	r.Detail = fmt.Sprintf("%d/%d blobs mounted, %s not uploaded", r.Mounted, r.Total, sizeString(r.Bytes))
	return nil
}

// baseRef is a base image on the push's registry, from the manifest
// annotations org.opencontainers.image.base.name and .base.digest.
type baseRef struct {
	repo   string
	digest digest.Digest
	// whole: the repository holds this very artifact (MountFrom), every
	// blob of it, not only a base's layers.
	whole bool
}

// findBases reads the graph's image manifests (from the source, no
// request) for bases in other repositories of the target's registry.
func (p *pushRun) findBases(ctx context.Context) []baseRef {
	target := p.ref
	var out []baseRef
	seen := map[baseRef]bool{}
	for _, m := range p.g.Manifests() {
		if oci.IsIndex(m.MediaType) {
			continue
		}
		body, err := p.readManifest(ctx, m)
		if err != nil {
			continue // publishing the manifest will report it
		}
		var man v1.Manifest
		if json.Unmarshal(body, &man) != nil {
			continue
		}
		ref, err := name.ParseReference(man.Annotations[v1.AnnotationBaseImageName])
		d, derr := digest.Parse(man.Annotations[v1.AnnotationBaseImageDigest])
		if err != nil || derr != nil || ref.Context().RegistryStr() != target.Context().RegistryStr() ||
			ref.Context().RepositoryStr() == target.Context().RepositoryStr() {
			continue
		}
		b := baseRef{repo: ref.Context().RepositoryStr(), digest: d}
		if !seen[b] {
			seen[b] = true
			out = append(out, b)
		}
	}
	return out
}

// baseLayers lists a base's layers as its repository has them; a base that
// is gone simply offers nothing to mount.
func (p *pushRun) baseLayers(ctx context.Context, b baseRef) ([]digest.Digest, error) {
	if b.whole {
		g, _, err := p.repo.Sibling(b.repo).Graph(ctx, b.digest, false)
		if err != nil {
			if e := failure.As(err); e.Temporary() {
				return nil, err
			}
			return nil, nil
		}
		var out []digest.Digest
		for _, d := range g.Blobs() {
			out = append(out, d.Digest)
		}
		return out, nil
	}
	body, desc, err := p.repo.Sibling(b.repo).GetManifest(ctx, b.digest.String())
	if err != nil {
		if e := failure.As(err); e.Temporary() {
			return nil, err
		}
		return nil, nil
	}
	children, err := oci.Children(desc.MediaType, body)
	if err != nil || len(children) == 0 {
		return nil, nil
	}
	var out []digest.Digest
	for _, c := range children[1:] { // the config is not shared
		out = append(out, c.Digest)
	}
	return out, nil
}

func (p *pushRun) manifestPublish(ctx context.Context, r *events.StageReport) error {
	if p.manifestPresent {
		return skip("manifest already in the registry")
	}
	for _, m := range p.g.Manifests() {
		body, err := p.readManifest(ctx, m)
		if err != nil {
			return err
		}
		link, err := p.publishManifest(ctx, m, body)
		if err != nil {
			return err
		}
		if link != nil {
			if err := p.repo.AddFallbackReferrers(ctx, link.subject, link.entry); err != nil {
				return err
			}
		}
		r.Total++
	}
	r.Detail = short(p.g.Root.Digest)
	p.attachAhead(ctx)
	return nil
}

func (p *pushRun) tagUpdate(ctx context.Context, r *events.StageReport) error {
	tag, ok := p.ref.(name.Tag)
	if !ok {
		return skip("pushed by digest, no tag")
	}
	if p.opts.mover != nil {
		return p.moveInOrder(ctx, r, tag)
	}
	if p.tagCurrent {
		return skip("%s already points at %s", tag.TagStr(), short(p.g.Root.Digest))
	}
	now := p.tagFound
	if p.opts.guarded() && !p.tagJustSeen(r) {
		// Look again right before moving it: the tag may have moved during
		// the upload. This is as close to a compare-and-swap as the
		// distribution protocol allows.
		d, found, err := p.repo.HeadManifest(ctx, tag.TagStr())
		if err != nil {
			return err
		}
		now = ""
		if found {
			now = d.Digest
		}
		if err := p.opts.checkTag(tag.TagStr(), now, p.g.Root.Digest); err != nil {
			return err
		}
	}
	b, err := p.readManifest(ctx, p.g.Root)
	if err != nil {
		return err
	}
	if _, err := p.repo.PutManifest(ctx, tag.TagStr(), p.g.Root.MediaType, b); err != nil {
		return err
	}
	r.Detail = fmt.Sprintf("%s:%s -> %s", tag.RepositoryStr(), tag.TagStr(), p.g.Root.Digest)
	if now != "" && now != p.g.Root.Digest {
		r.Detail += fmt.Sprintf(" (was %s)", short(now))
	}
	return nil
}

// moveInOrder moves the tag through the pipeline's order (MoveTagVia):
// it looks at the tag once its turn has come, refuses drift from where
// the pipeline left the tag, and puts it.
func (p *pushRun) moveInOrder(ctx context.Context, r *events.StageReport, tag name.Tag) error {
	root := p.g.Root.Digest
	from, err := p.opts.mover(ctx, tag.Name(), func(ctx context.Context, known []string) (string, error) {
		was, err := p.tagNow(ctx, r, tag, known)
		if err != nil {
			return "", err
		}
		if err := p.opts.checkTagKnown(tag.TagStr(), was, root, known); err != nil {
			return "", err
		}
		if was == root {
			return was.String(), nil
		}
		b, err := p.readManifest(ctx, p.g.Root)
		if err != nil {
			return "", err
		}
		_, err = p.repo.PutManifest(ctx, tag.TagStr(), p.g.Root.MediaType, b)
		return was.String(), err
	})
	var o interface{ Overtaken() string }
	if errors.As(err, &o) {
		p.overtaken = err
		return skip("%s", o.Overtaken())
	}
	if err != nil {
		return err
	}
	was := digest.Digest(from)
	if was == root {
		return skip("%s already points at %s", tag.TagStr(), short(root))
	}
	r.Detail = fmt.Sprintf("%s:%s -> %s", tag.RepositoryStr(), tag.TagStr(), root)
	if was != "" {
		r.Detail += fmt.Sprintf(" (was %s)", short(was))
	}
	return nil
}

// tagNow is where the tag points once the run's turn to move it has come.
// The manifest check's look serves when it is as fresh as a second one
// (tagJustSeen) and no run has moved the tag since: the pipeline never
// moved it, or its last move left it where the look found it.
func (p *pushRun) tagNow(ctx context.Context, r *events.StageReport, tag name.Tag, known []string) (digest.Digest, error) {
	seen := p.tagFound
	if p.tagCurrent {
		seen = p.g.Root.Digest
	}
	if p.tagJustSeen(r) && (known == nil || len(known) == 1 && known[0] == seen.String()) {
		return seen, nil
	}
	d, found, err := p.repo.HeadManifest(ctx, tag.TagStr())
	if err != nil || !found {
		return "", err
	}
	return d.Digest, nil
}

// tagJustSeen reports whether the manifest check's look at the tag is
// as fresh as a second look would be: the manifest was there, so every
// stage since skipped (nothing uploaded, nothing proven), and this is the
// tag update's first try. A tag moved onto an image the registry has
// (a promotion) asks once.
func (p *pushRun) tagJustSeen(r *events.StageReport) bool {
	return p.manifestPresent && p.opts.prove == nil && r.Attempt == 1
}

// verify runs the push's proof of what it wrote (VerifyBeforeTag).
func (p *pushRun) verify(ctx context.Context, r *events.StageReport) error {
	detail, err := p.opts.prove.Prove(ctx)
	r.Detail = detail
	return err
}
