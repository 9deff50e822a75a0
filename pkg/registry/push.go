package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry/transport"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
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
	ctx = transport.CountRequests(ctx, &p.counter)
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
	return p.result(), p.overtaken
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
	overtaken       error         // the mover's refusal: a newer request moved the tag (MoveTagVia)
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
	ctx = transport.WithStage(ctx, stage)
	ctx, span := p.c.tracer.Start(ctx, "push "+stage, trace.WithAttributes(
		attribute.String("digestline.stage", stage),
		attribute.String("oci.reference", p.ref.String()),
		attribute.String("oci.manifest.digest", p.g.Root.Digest.String()),
	))
	defer span.End()

	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = p.c.retryBase
	start, reqs := time.Now(), p.requests()
	var failingSince time.Time // when the stage's first failed attempt began
	for attempt := 1; ; attempt++ {
		r := events.StageReport{Target: p.ref.String(), Digest: p.g.Root.Digest.String(), Stage: stage, Attempt: attempt}
		attemptStart := time.Now()
		err := fn(ctx, &r)
		r.AttemptMS, r.Requests = time.Since(attemptStart).Milliseconds(), p.requests()-reqs
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
		if failingSince.IsZero() {
			failingSince = attemptStart
		}
		delay := e.RetryAfter
		if delay <= 0 {
			delay = bo.NextBackOff()
		}
		outwaited := p.c.wait > 0 && time.Since(failingSince)+delay+p.c.timeout > p.c.wait
		if outwaited && e.Temporary() && attempt <= p.c.retries { // the wait, not the retry count, stopped it
			e.Hint = fmt.Sprintf("%s (gave up after %s of failed tries: DIGESTLINE_REGISTRY_WAIT sets how long to keep trying)",
				e.Hint, time.Since(failingSince).Round(time.Second))
		}
		report := e.Report()
		r.Error = &report
		if !e.Temporary() || attempt > p.c.retries || outwaited || ctx.Err() != nil {
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
