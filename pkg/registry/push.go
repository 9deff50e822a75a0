package registry

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
)

// Observer receives every stage report as it happens, one at a time, in
// stage order; ctx carries the stage's span.
type Observer func(ctx context.Context, r events.StageReport)

// PushResult summarizes a push.
type PushResult struct {
	Digest        digest.Digest
	Uploaded      int
	Existing      int
	Mounted       int
	BytesUploaded int64
	Requests      int
}

// Push pushes the graph to ref stage by stage, reading blobs from src. When
// ref is a tag, the tag is moved to the graph's root; when it is a digest, it
// must be the root's. A warm push — the tag already points at the root —
// makes one HEAD request after auth and uploads nothing.
func (c *Client) Push(ctx context.Context, ref name.Reference, g oci.Graph, src oci.BlobReader, observe Observer, opts ...PushOption) (PushResult, error) {
	if err := g.Validate(); err != nil {
		return PushResult{}, &failure.Error{Class: failure.Schema, Err: err, Hint: "the build output is malformed: rebuild it"}
	}
	if d, ok := ref.(name.Digest); ok && d.DigestStr() != g.Root.Digest.String() {
		return PushResult{}, &failure.Error{Class: failure.Integrity, Err: fmt.Errorf("reference %s names another digest than the artifact's %s", ref, g.Root.Digest),
			Hint: "push by tag, or by the artifact's own digest"}
	}
	if observe == nil {
		observe = func(context.Context, events.StageReport) {}
	}
	p := &pushRun{c: c, ref: ref, g: g, src: src, observe: observe, uploaded: map[digest.Digest]bool{}, sessions: map[digest.Digest]*uploadSession{},
		mountSessions: map[digest.Digest]*uploadSession{},
		opts:          pushOptions{policy: TagFail}}
	p.attached = attachedBlobs{p: p, counted: map[digest.Digest]bool{}}
	ctx = countRequests(ctx, &p.counter)
	// The blobs sent ahead end with the push: cut short when it fails.
	ctx, cancel := context.WithCancel(ctx)
	defer p.early.Wait()
	defer cancel()
	for _, o := range opts {
		o(&p.opts)
	}
	p.bases = append(p.findBases(ctx), p.opts.mountFrom(ref.Context(), g.Root.Digest)...)
	content := []stage{
		{events.StageAuth, p.auth},
		{events.StageManifestCheck, p.manifestCheck},
		{events.StageBlobCheck, p.blobCheck},
		{events.StageMount, p.mount},
		{events.StageUpload, p.upload},
		{events.StageManifestPublish, p.manifestPublish},
	}
	steps := slices.Concat(content, []stage{{events.StageTagUpdate, p.tagUpdate}, {events.StageReferrers, p.referrers}})
	if p.opts.prove != nil {
		// The tag moves last, onto what is proven where it is.
		steps = slices.Concat(content, []stage{{events.StageReferrers, p.referrers}, {events.StageVerify, p.verify}, {events.StageTagUpdate, p.tagUpdate}})
	}
	for _, s := range steps {
		if err := p.run(ctx, s.name, s.fn); err != nil {
			return p.result(), err
		}
	}
	return p.result(), nil
}

type stageFunc func(ctx context.Context, r *events.StageReport) error

type stage struct {
	name string
	fn   stageFunc
}

// pushRun is the state of one push; it lets a retried stage resume where the
// failed attempt stopped (uploaded blobs are not sent again).
type pushRun struct {
	c       *Client
	ref     name.Reference
	g       oci.Graph
	src     oci.BlobReader
	observe Observer
	opts    pushOptions
	bases   []baseRef    // where missing blobs may be mounted from
	counter atomic.Int64 // every request of the push that reached the wire, auth included
	repo    *Repo

	tagCurrent      bool          // the tag already points at the root
	tagFound        digest.Digest // where the tag pointed before the push ("" if absent)
	manifestPresent bool          // the registry has the root manifest
	missing         []v1.Descriptor
	announced       bool // the blobs to upload were announced to opts.progress

	// attached pushes the attached artifacts' blobs, each once for the
	// whole push, and attachments the artifacts; early is what the upload
	// and manifest publish stages started ahead.
	attached    attachedBlobs
	attachments sharedReads
	early       sync.WaitGroup
	manifests   sharedReads // the source's manifests, each read once

	mu       sync.Mutex
	uploaded map[digest.Digest]bool
	sessions map[digest.Digest]*uploadSession // chunked uploads to resume
	// mountSessions are the upload sessions registries opened when they
	// answered a mount with 202: a blob's upload goes into its own.
	mountSessions map[digest.Digest]*uploadSession
	res           PushResult
}

func (p *pushRun) result() PushResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	res := p.res
	res.Digest = p.g.Root.Digest
	res.Requests = p.requests()
	return res
}

func (p *pushRun) requests() int { return int(p.counter.Load()) }

// run executes one stage in its own span, retrying transient failures with
// exponential backoff and jitter (or the registry's Retry-After).
func (p *pushRun) run(ctx context.Context, stage string, fn stageFunc) error {
	ctx, span := p.c.tracer.Start(ctx, "push "+stage, trace.WithAttributes(
		attribute.String("digestline.stage", stage),
		attribute.String("oci.reference", p.ref.String()),
		attribute.String("oci.manifest.digest", p.g.Root.Digest.String()),
	))
	defer span.End()

	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = p.c.retryBase
	start, reqs := time.Now(), p.requests()
	for attempt := 1; ; attempt++ {
		r := events.StageReport{Target: p.ref.String(), Digest: p.g.Root.Digest.String(), Stage: stage, Attempt: attempt}
		err := fn(ctx, &r)
		r.Requests = p.requests() - reqs
		if reason, ok := asSkip(err); ok {
			r.Status, r.Detail, err = events.StatusSkipped, reason, nil
		} else if err == nil {
			r.Status = events.StatusOK
		}
		if err == nil {
			span.SetAttributes(attribute.String("digestline.stage.status", r.Status),
				attribute.Int("digestline.blobs.total", r.Total), attribute.Int("digestline.blobs.existing", r.Existing),
				attribute.Int("digestline.blobs.uploaded", r.Uploaded), attribute.Int64("digestline.bytes", r.Bytes),
				attribute.Int("digestline.requests", r.Requests), attribute.Int("digestline.attempts", attempt))
			p.report(ctx, r, start)
			return nil
		}
		e := failure.As(err)
		e.Stage = stage
		report := e.Report()
		r.Error = &report
		if !e.Temporary() || attempt > p.c.retries || ctx.Err() != nil {
			if e.Temporary() && !errors.Is(e, oci.ErrStore) {
				// Retried here already; the blob store is the bus's, and a
				// redelivery of the whole push may find it back.
				e.Exhausted = true
			}
			r.Status = events.StatusFailed
			span.RecordError(e)
			span.SetStatus(codes.Error, e.Error())
			span.SetAttributes(attribute.String("digestline.stage.status", r.Status),
				attribute.String("error.type", string(e.Class)), attribute.String("digestline.error.hint", e.Hint),
				attribute.Int("digestline.attempts", attempt))
			p.report(ctx, r, start)
			return e
		}
		r.Status = events.StatusRetrying
		span.AddEvent("retry", trace.WithAttributes(attribute.Int("attempt", attempt), attribute.String("error.type", string(e.Class))))
		r.DurationMS, r.Line = time.Since(start).Milliseconds(), r.RenderLine()
		p.observe(ctx, r)
		delay := e.RetryAfter
		if delay <= 0 {
			delay = bo.NextBackOff()
		}
		select {
		case <-ctx.Done():
			hint := "the push was cancelled"
			var d *failure.DeadlineError
			if errors.As(context.Cause(ctx), &d) {
				hint = failure.As(d).Hint
			}
			return &failure.Error{Class: failure.Transport, Stage: stage, Err: context.Cause(ctx), Hint: hint}
		case <-time.After(delay):
		}
	}
}

// report hands a stage's final report to the observer and the
// stage-duration histogram.
func (p *pushRun) report(ctx context.Context, r events.StageReport, start time.Time) {
	d := time.Since(start)
	r.DurationMS, r.Line = d.Milliseconds(), r.RenderLine()
	p.c.metrics.stageDuration.Record(ctx, d.Seconds(), metric.WithAttributes(
		attribute.String("stage", r.Stage), attribute.String("status", r.Status)))
	p.observe(ctx, r)
}

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
	r.Detail = p.ref.Context().RegistryStr()
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
		// Refuse before uploading anything when the tag may not move.
		if err := p.opts.checkTag(tag.TagStr(), p.tagFound, root); err != nil {
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

func (p *pushRun) upload(ctx context.Context, r *events.StageReport) error {
	if p.manifestPresent || len(p.missing) == 0 {
		p.sendAttachedAhead(ctx)
		return skip("nothing missing")
	}
	// Largest first: the registry hashes each blob on one core, so the
	// biggest one must not be left running alone at the end.
	order := slices.Clone(p.missing)
	slices.SortStableFunc(order, func(a, b v1.Descriptor) int { return cmp.Compare(b.Size, a.Size) })
	p.mu.Lock()
	order = slices.DeleteFunc(order, func(b v1.Descriptor) bool { return p.uploaded[b.Digest] })
	p.mu.Unlock()
	if fn := p.opts.progress; fn != nil && !p.announced {
		p.announced = true // a retried stage resumes, it does not start from 0
		for _, b := range order {
			fn(b, 0)
		}
	}
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(p.c.jobs)
	for _, b := range order {
		eg.Go(func() error {
			sent, err := p.uploadOne(ectx, b)
			p.c.metrics.bytesPushed.Add(ctx, sent)
			p.mu.Lock()
			defer p.mu.Unlock()
			p.res.BytesUploaded += sent
			if err != nil {
				return err
			}
			p.uploaded[b.Digest] = true
			p.res.Uploaded++
			p.arrived(b)
			return nil
		})
	}
	err := eg.Wait()
	p.mu.Lock()
	r.Total, r.Uploaded, r.Bytes = len(p.missing), p.res.Uploaded, p.res.BytesUploaded
	p.mu.Unlock()
	r.Detail = fmt.Sprintf("%d/%d blobs, %s", r.Uploaded, r.Total, sizeString(r.Bytes))
	if err == nil {
		p.sendAttachedAhead(ctx) // now that the image's uploads told how the registry takes small blobs
	}
	return err
}

// uploadOne uploads one blob — whole, or in resumable chunks when it is big —
// and returns the bytes it sent.
func (p *pushRun) uploadOne(ctx context.Context, b v1.Descriptor) (int64, error) {
	release, err := p.c.limits.uploadSlot(ctx, p.ref.Context().RegistryStr())
	if err != nil {
		return 0, err
	}
	defer release()
	rc, err := p.src.Open(ctx, b.Digest)
	if err != nil {
		return 0, sourceError(err, "blob "+b.Digest.String())
	}
	defer rc.Close()
	p.mu.Lock()
	opened := p.mountSessions[b.Digest]
	delete(p.mountSessions, b.Digest) // used once: a retry opens its own
	p.mu.Unlock()
	if opened == nil && b.Size <= SmallBlob {
		if err := p.uploadSmall(ctx, b, rc); err != nil {
			return 0, err
		}
		return b.Size, nil
	}
	over, size := p.c.chunking(ctx, p.repo, b.Size)
	if over <= 0 || b.Size <= over {
		if opened == nil {
			err = p.repo.UploadBlob(ctx, b, p.watch(rc, b, 0))
		} else if err = p.repo.finish(ctx, opened, b.Digest, p.watch(rc, b, 0), b.Size); err != nil && !failure.As(err).Temporary() {
			return p.uploadStreamed(ctx, b) // the session the mount opened is gone: one of our own
		}
		if err != nil {
			return 0, err
		}
		return b.Size, nil
	}
	return p.uploadChunked(ctx, b, rc, opened, size)
}

// uploadChunked uploads blob b, read from rc, in chunks of size into a
// session: the one a mount opened, or one of a failed attempt (the registry
// is asked how far it got, and what it has is skipped, not sent again), or
// a new one. A registry that refuses the first chunk gets the blob streamed
// instead, now and for the rest of the process.
func (p *pushRun) uploadChunked(ctx context.Context, b v1.Descriptor, rc io.Reader, opened *uploadSession, size int64) (int64, error) {
	p.mu.Lock()
	s := p.sessions[b.Digest]
	p.mu.Unlock()
	if s != nil {
		if err := p.repo.status(ctx, s); err != nil {
			if failure.As(err).Temporary() {
				return 0, err
			}
			s = nil // the session expired: start over
		}
	}
	if s == nil {
		s = opened
	}
	if s == nil {
		var err error
		if s, err = p.repo.startUpload(ctx); err != nil {
			return 0, err
		}
	}
	p.mu.Lock()
	p.sessions[b.Digest] = s // for a retried stage to resume
	p.mu.Unlock()
	if _, err := io.CopyN(io.Discard, rc, s.offset); err != nil { // already at the registry: skipped, not re-sent
		return 0, fmt.Errorf("skip %d bytes of %s: %w", s.offset, b.Digest, err)
	}
	body := p.watch(rc, b, s.offset)
	var sent int64
	chunk := max(size, s.minChunk)
	for s.offset < b.Size {
		n := min(chunk, b.Size-s.offset)
		first := s.offset == 0
		if err := p.repo.patch(ctx, s, io.LimitReader(body, n), n); err != nil {
			if first && refusesChunks(err) {
				// Artifact Registry and others take no Content-Range: the
				// blob goes up streamed, now and from now on.
				p.c.chunks.Store(p.ref.Context().RegistryStr(), No)
				p.mu.Lock()
				delete(p.sessions, b.Digest)
				p.mu.Unlock()
				return p.uploadStreamed(ctx, b)
			}
			return sent, err
		}
		sent += n
	}
	if err := p.repo.finish(ctx, s, b.Digest, http.NoBody, 0); err != nil {
		return sent, err
	}
	p.mu.Lock()
	delete(p.sessions, b.Digest)
	p.mu.Unlock()
	return sent, nil
}

// uploadSmall uploads blob b, of at most SmallBlob bytes, read from rc: in
// one POST to a registry that takes a single POST, else in a session. The
// registry's answer to the first one is kept for the client's later pushes.
func (p *pushRun) uploadSmall(ctx context.Context, b v1.Descriptor, rc io.Reader) error {
	body, err := io.ReadAll(io.LimitReader(p.watch(rc, b, 0), b.Size+1))
	if err != nil {
		return readError(err, b)
	}
	if !oci.Matches(b, body) {
		return sourceError(fmt.Errorf("%d bytes that do not match the descriptor", len(body)), "blob "+b.Digest.String())
	}
	host := p.ref.Context().RegistryStr()
	if known, _ := p.c.singlePost.Load(host); known != No {
		s, err := p.repo.postBlob(ctx, b.Digest, body)
		switch {
		case err == nil && s == nil:
			p.c.singlePost.Store(host, Yes)
			return nil
		case err == nil: // a session instead: the blob goes up there
			p.c.singlePost.Store(host, No)
			return p.repo.finish(ctx, s, b.Digest, bytes.NewReader(body), b.Size)
		case !refusesSinglePost(err):
			return err
		}
		p.c.singlePost.Store(host, No)
	}
	return p.repo.UploadBlob(ctx, b, bytes.NewReader(body))
}

// readError classifies a failure to read blob b from where it is pushed
// from: the build's blob store, or the registry a copy reads.
func readError(err error, b v1.Descriptor) error {
	if errors.Is(err, oci.ErrStore) || errors.Is(err, oci.ErrBlobNotFound) {
		return sourceError(err, "blob "+b.Digest.String())
	}
	return &failure.Error{Class: failure.Transport, Err: fmt.Errorf("read blob %s from its source: %w", b.Digest, err),
		Hint: "the source stopped sending the blob: it is retried"}
}

// uploadStreamed uploads blob b whole, read again from the start.
func (p *pushRun) uploadStreamed(ctx context.Context, b v1.Descriptor) (int64, error) {
	rc, err := p.src.Open(ctx, b.Digest)
	if err != nil {
		return 0, sourceError(err, "blob "+b.Digest.String())
	}
	defer rc.Close()
	if err := p.repo.UploadBlob(ctx, b, p.watch(rc, b, 0)); err != nil {
		return 0, err
	}
	return b.Size, nil
}

// refusesChunks reports whether a chunk's failure says the registry takes
// no chunked uploads: 400, 416 or 501, or the code BLOB_UPLOAD_INVALID or
// UNSUPPORTED.
func refusesChunks(err error) bool {
	var e *failure.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Status {
	case http.StatusBadRequest, http.StatusRequestedRangeNotSatisfiable, http.StatusNotImplemented:
		return true
	}
	return slices.Contains(e.Codes, "BLOB_UPLOAD_INVALID") || slices.Contains(e.Codes, "UNSUPPORTED")
}

// watch reports reads of blob b, the registry already holding its first
// done bytes, when the push has a Progress; otherwise r goes to the
// transport as it is.
func (p *pushRun) watch(r io.Reader, b v1.Descriptor, done int64) io.Reader {
	if p.opts.progress == nil {
		return r
	}
	p.opts.progress(b, done)
	return &progressReader{r: r, blob: b, done: done, fn: p.opts.progress}
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

// pushBlob uploads one blob unless the registry has it. A small blob goes
// up unasked to a registry known to take single POSTs: one request, as
// asking would be (the registry keeps one copy of a blob either way).
func (p *pushRun) pushBlob(ctx context.Context, b v1.Descriptor) (uploaded bool, err error) {
	small := b.Size <= SmallBlob
	if known, _ := p.c.singlePost.Load(p.ref.Context().RegistryStr()); !small || known != Yes {
		exists, err := p.repo.HeadBlob(ctx, b.Digest)
		if err != nil || exists {
			return false, err
		}
	}
	rc, err := p.src.Open(ctx, b.Digest)
	if err != nil {
		return false, sourceError(err, "blob "+b.Digest.String())
	}
	defer rc.Close()
	if small {
		return true, p.uploadSmall(ctx, b, rc)
	}
	return true, p.repo.UploadBlob(ctx, b, rc)
}

// sourceError classifies a failure to read the artifact from where it was
// built (src): the store not answering is transient (retried here, and it
// wraps oci.ErrStore so a service can retry the whole event rather than fail
// the run); content that is gone or does not match is not.
func sourceError(err error, what string) *failure.Error {
	err = fmt.Errorf("read %s from the build output: %w", what, err)
	switch {
	case errors.Is(err, oci.ErrStore):
		return &failure.Error{Class: failure.Transport, Err: err, Hint: "the blob store did not answer: it is retried"}
	case errors.Is(err, oci.ErrBlobNotFound):
		return &failure.Error{Class: failure.NotFound, Err: err, Hint: "the build's blobs are gone from the blob store: rebuild"}
	}
	return &failure.Error{Class: failure.Integrity, Err: err, Hint: "the build output is altered: rebuild"}
}

// short abbreviates a digest for stage lines: sha256:0123456789ab.
func short(d digest.Digest) string {
	s := d.String()
	if i := len(d.Algorithm().String()) + 1 + 12; len(s) > i {
		return s[:i]
	}
	return s
}
