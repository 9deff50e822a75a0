package registry

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// referrers pushes the artifacts attached to the root (an SBOM, a
// signature), concurrently: each one's blobs, then its manifests by digest.
// A registry with the referrers API lists them from the manifest's subject;
// for one without it, each subject's sha256-<hex> fallback tag index is
// updated once, with all of its new referrers.
func (p *pushRun) referrers(ctx context.Context, r *events.StageReport) error {
	if len(p.g.Referrers) == 0 {
		return skip("no artifacts attached")
	}
	var (
		mu                    sync.Mutex
		viaAPI, viaCosignTags int
		fallback              = map[digest.Digest][]v1.Descriptor{}
	)
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(p.c.jobs)
	for _, ref := range p.g.Referrers {
		eg.Go(func() error {
			a, err := p.attachOnce(ectx, ref)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			r.Uploaded += a.uploaded
			r.Bytes += a.bytes
			switch {
			case a.present:
				r.Existing++
			case a.tagged:
				viaCosignTags++
			case len(a.links) == 0:
				viaAPI++
			}
			for _, l := range a.links {
				fallback[l.subject] = append(fallback[l.subject], l.entry)
			}
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return err
	}
	viaFallback := 0
	for subject, entries := range fallback {
		if err := p.repo.AddFallbackReferrers(ctx, subject, entries...); err != nil {
			return err
		}
		viaFallback += len(entries)
	}
	r.Total = len(p.g.Referrers)
	r.Detail = fmt.Sprintf("%d attached (%d via referrers API, %d via fallback tag, %d present)", r.Total, viaAPI, viaFallback, r.Existing)
	if viaCosignTags > 0 {
		r.Detail += fmt.Sprintf("; %d under cosign's tags", viaCosignTags)
	}
	return nil
}

// attached is what pushing one attached artifact did.
type attached struct {
	present  bool // it was there already
	tagged   bool // under one of cosign's tags
	uploaded int
	bytes    int64
	links    []fallbackLink // what the subjects' fallback tags must list
}

// attachOnce attaches ref as attach does, once for the whole push: the
// referrers stage waits for one attached ahead, and a stage tried again
// does not put again what its first attempt put.
func (p *pushRun) attachOnce(ctx context.Context, ref oci.Graph) (attached, error) {
	return read(ctx, &p.attachments, ref.Root.Digest.String(), func() (attached, error) { return p.attach(ctx, ref) })
}

// attachAhead starts attaching the artifacts of an image the registry has
// just been given, as sendAttachedAhead their blobs: their manifests go up
// while its tag moves, and the referrers stage waits for them (a round
// trip less). Their requests are in the trace under this stage's span.
func (p *pushRun) attachAhead(ctx context.Context) {
	for _, ref := range p.g.Referrers {
		if TaggedAs(ref) == "" {
			p.early.Go(func() { _, _ = p.attachOnce(ctx, ref) }) // a failure is the referrers stage's to retry and report
		}
	}
}

// attach pushes one attached artifact, unless it is there: listed (by
// the API, or by the fallback tag when it was pushed), or — one cosign
// keeps under a tag — with its tag pointing at it.
func (p *pushRun) attach(ctx context.Context, ref oci.Graph) (attached, error) {
	tag := TaggedAs(ref)
	// What is attached to a subject the registry did not have when the
	// push began is new too, unless a tag says otherwise: not asked for
	// (pushing it again would put the same bytes under the same digest).
	if p.manifestPresent || tag != "" {
		d, found, err := p.repo.HeadManifest(ctx, cmp.Or(tag, ref.Root.Digest.String()))
		if err != nil {
			return attached{}, err
		}
		if found && d.Digest == ref.Root.Digest {
			return attached{present: true}, nil
		}
	}
	a := attached{tagged: tag != ""}
	bodies, err := p.pushBlobsOf(ctx, ref, &a)
	if err != nil {
		return attached{}, err
	}
	var root []byte
	for i, m := range ref.Manifests() {
		link, err := p.publishManifest(ctx, m, bodies[i])
		if err != nil {
			return attached{}, err
		}
		if link != nil {
			a.links = append(a.links, *link)
		}
		if m.Digest == ref.Root.Digest {
			root = bodies[i]
		}
	}
	if tag != "" {
		if _, err := p.repo.PutManifest(ctx, tag, ref.Root.MediaType, root); err != nil {
			return attached{}, err
		}
	}
	return a, nil
}

// pushBlobsOf pushes an attached artifact's blobs at once, and meanwhile
// reads its manifests (children first) from the source: a round trip or
// more apiece, none waiting for another. It counts what it uploaded into a.
func (p *pushRun) pushBlobsOf(ctx context.Context, ref oci.Graph, a *attached) ([][]byte, error) {
	manifests := ref.Manifests()
	bodies := make([][]byte, len(manifests))
	var mu sync.Mutex
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(p.c.jobs)
	eg.Go(func() error {
		for i, m := range manifests {
			var err error
			if bodies[i], err = p.readManifest(ectx, m); err != nil {
				return err
			}
		}
		return nil
	})
	for _, b := range ref.Blobs() {
		eg.Go(func() error {
			uploaded, err := p.attached.push(ectx, b, true)
			if err != nil || !uploaded {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			a.uploaded++
			a.bytes += b.Size
			return nil
		})
	}
	return bodies, eg.Wait()
}

// sendAttachedAhead starts pushing the blobs of the artifacts attached to
// an image the registry did not have, once the image's own blobs are up:
// they are new too. They go up while the image's manifest is published,
// and their manifests right after it (attachAhead): a round trip less
// apiece to a registry far away. One kept under a cosign tag is asked for
// first, there: not sent ahead.
func (p *pushRun) sendAttachedAhead(ctx context.Context) {
	if p.manifestPresent || p.attached.started {
		return
	}
	p.attached.started = true
	for _, ref := range p.g.Referrers {
		if TaggedAs(ref) != "" {
			continue
		}
		for _, b := range ref.Blobs() {
			p.early.Go(func() { _, _ = p.attached.push(ctx, b, false) }) // a failure is the referrers stage's to retry and report
		}
	}
}

// attachedBlobs pushes each blob of the attached artifacts once for the
// whole push, however many artifacts share it (an empty config) and
// whoever asks first (the upload stage sending it ahead, or the referrers
// stage): the others wait for it, as for a Shared Repo's reads. One that
// failed is pushed again by the next caller.
type attachedBlobs struct {
	p       *pushRun
	started bool // the upload stage sent them ahead
	pushes  sharedReads

	mu      sync.Mutex
	counted map[digest.Digest]bool // reported uploaded to the referrers stage
}

// push pushes b unless it is pushed or being pushed, and waits for it.
// With count, it says whether b was uploaded and not counted yet: the
// referrers stage counts each blob it uploaded once.
func (a *attachedBlobs) push(ctx context.Context, b v1.Descriptor, count bool) (bool, error) {
	uploaded, err := read(ctx, &a.pushes, b.Digest.String(), func() (bool, error) {
		uploaded, err := a.p.pushBlob(ctx, b)
		if err == nil {
			a.p.arrived(b)
		}
		return uploaded, err
	})
	if err != nil || !uploaded || !count {
		return false, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.counted[b.Digest] {
		return false, nil
	}
	a.counted[b.Digest] = true
	return true, nil
}

// fallbackLink is an entry the subject's fallback tag index must list: the
// registry stored a manifest with that subject but did not acknowledge it.
type fallbackLink struct {
	subject digest.Digest
	entry   v1.Descriptor
}

// readManifest reads manifest m from where the push reads from, checked,
// once for the whole push: the bases' lookup, the publish and the tag all
// read the root's.
func (p *pushRun) readManifest(ctx context.Context, m v1.Descriptor) ([]byte, error) {
	return read(ctx, &p.manifests, m.Digest.String(), func() ([]byte, error) {
		body, err := oci.ReadManifest(ctx, p.src, m)
		if err != nil {
			return nil, sourceError(err, "manifest "+m.Digest.String())
		}
		return body, nil
	})
}

// publishManifest puts a manifest (m, its bytes body) by digest. When it
// has a subject and the registry did not acknowledge it (no referrers API),
// it returns the entry the subject's fallback tag index must list so the
// manifest is still discoverable.
func (p *pushRun) publishManifest(ctx context.Context, m v1.Descriptor, body []byte) (*fallbackLink, error) {
	acknowledged, err := p.repo.PutManifest(ctx, m.Digest.String(), m.MediaType, body)
	if err != nil || acknowledged {
		return nil, err
	}
	var withSubject struct {
		Subject      *v1.Descriptor `json:"subject"`
		ArtifactType string         `json:"artifactType"`
		Config       v1.Descriptor  `json:"config"`
	}
	if json.Unmarshal(body, &withSubject) != nil || withSubject.Subject == nil {
		return nil, nil
	}
	entry := m
	// As the referrers API lists it: the manifest's artifactType, else its
	// config's media type (cosign's signatures, for one, say it there).
	entry.ArtifactType = cmp.Or(withSubject.ArtifactType, withSubject.Config.MediaType)
	return &fallbackLink{subject: withSubject.Subject.Digest, entry: entry}, nil
}
