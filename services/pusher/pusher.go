package pusher

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/service"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
)

// Config configures the pusher.
type Config struct {
	service.Deps
	// Registry pushes; nil means a client with credentials from the
	// environment or the docker config.
	Registry *registry.Client
}

// Run consumes build.completed until ctx is cancelled.
func Run(ctx context.Context, cfg Config) error {
	bus := cfg.Bus("pusher")
	blobs, err := events.OpenBlobStore(ctx, cfg.JetStream)
	if err != nil {
		return err
	}
	if cfg.Registry == nil {
		cfg.Registry = cfg.Deps.Registry()
	}
	p := &pusher{cfg: cfg, bus: bus, blobs: blobs}
	return bus.Consume(ctx, events.ConsumerSpec{Durable: "pusher", Events: []events.Name{events.BuildCompleted, events.PromotionApproved}}, func(ctx context.Context, m events.Message) error {
		if m.Name == events.PromotionApproved {
			return p.promote(ctx, m)
		}
		return p.handle(ctx, m)
	})
}

type pusher struct {
	cfg   Config
	bus   *events.Bus
	blobs *events.BlobStore
}

func (p *pusher) handle(ctx context.Context, m events.Message) error {
	build, err := events.Decode[events.BuildResult](m.Event)
	if err != nil {
		return err
	}
	evidence := build.Evidence
	evidence.Build = m.Event.ID()
	fail := func(f events.Failure) error {
		f.Target, f.Digest, f.Evidence = build.Target, build.Graph.Root.Digest.String(), evidence
		_, err := p.bus.Emit(ctx, m.Event, events.PushFailed, "", f)
		return err
	}
	ref, err := name.ParseReference(build.Target)
	if err != nil {
		return fail(events.Failure{Stage: registry.StageAuth, Class: string(registry.ClassSchema), Message: err.Error(),
			Hint: "the target must be an image reference such as registry.example.com/team/app:tag"})
	}

	stages, observe := p.stages(m, build.Target, build.Graph.Root.Digest.String())
	opts, err := TagOptions(build.Tag)
	if err != nil {
		return fail(events.Failure{Stage: registry.StageTagUpdate, Class: string(registry.ClassSchema), Message: err.Error(),
			Hint: "set tag.policy to fail, force or if-absent, and tag.expect to a digest"})
	}
	// Upload progress goes out a few times a second for whoever watches
	// (digestline ship draws it); it is not stored.
	feed := events.NewProgressFeed(p.cfg.JetStream.Conn(), events.RunID(m.Event), build.Target, build.Graph.Root.Digest.String())
	feedCtx, stopFeed := context.WithCancel(ctx)
	fed := make(chan struct{})
	go func() { defer close(fed); feed.Run(feedCtx, 250*time.Millisecond) }()
	res, err := p.cfg.Registry.Push(ctx, ref, build.Graph, p.blobs, observe, append(opts, registry.WithProgress(feed.Update))...)
	stopFeed()
	<-fed
	if err := stages.Wait(ctx); err != nil {
		return err
	}
	if errors.Is(err, oci.ErrStore) && !m.LastTry {
		return err // our blob store (the bus) failed, not the registry: push again later
	}
	var rerr *registry.Error
	if errors.As(err, &rerr) {
		if d := rerr.Drift; d != nil {
			if _, err := p.bus.Emit(ctx, m.Event, events.DriftDetected, "", events.Drift{
				Target: build.Target, Tag: d.Tag, Expected: d.Expected.String(), Found: d.Found.String(),
			}); err != nil {
				return err
			}
		}
		return fail(failure(rerr))
	}
	if err != nil {
		return err
	}
	_, err = p.bus.Emit(ctx, m.Event, events.PushCompleted, "", events.PushResult{
		Target: build.Target, Digest: res.Digest.String(), Graph: build.Graph,
		BlobsUploaded: res.Uploaded, BlobsExisting: res.Existing, BlobsMounted: res.Mounted,
		BytesUploaded: res.BytesUploaded, Requests: res.Requests, PromoteTo: build.PromoteTo, Evidence: evidence,
	})
	return err
}

// promote moves an environment's tag to an approved digest through the same
// stages as any push: the manifest is found in the registry, so nothing is
// uploaded, and the tag moves only from where the gates saw it (drift
// protection). push.completed then sends the digest to be verified again.
func (p *pusher) promote(ctx context.Context, m events.Message) error {
	a, err := events.Decode[events.Approval](m.Event)
	if err != nil {
		return err
	}
	target := a.Repository + ":" + a.Tag
	fail := func(e *registry.Error) error {
		f := failure(e)
		f.Target, f.Digest, f.Evidence = target, a.Digest, a.Evidence
		_, err := p.bus.Emit(ctx, m.Event, events.PushFailed, "", f)
		return err
	}
	ref, err := name.NewTag(target)
	if err != nil {
		return events.Permanent(err)
	}
	// The graph is read back from the registry: the digest was pushed and
	// verified before, and the verifier compares against this graph again.
	repo, err := p.cfg.Registry.Open(ctx, ref.Context(), false)
	if err != nil {
		return p.retryOr(err, fail)
	}
	root, found, err := repo.HeadManifest(ctx, a.Digest)
	if err != nil {
		return p.retryOr(err, fail)
	}
	if !found {
		return fail(&registry.Error{Class: registry.ClassNotFound, Stage: registry.StageManifestCheck,
			Err: fmt.Errorf("%s@%s is not in the registry", a.Repository, a.Digest), Hint: "the approved digest was deleted: ship it again"})
	}
	g, err := oci.Walk(ctx, repo.Manifests(), root)
	if err != nil {
		return p.retryOr(err, fail)
	}
	guard := events.TagGuard{Policy: string(registry.TagIfAbsent)}
	if a.Previous != "" {
		guard = events.TagGuard{Policy: string(registry.TagFail), Expect: a.Previous}
	}
	opts, err := TagOptions(guard)
	if err != nil {
		return events.Permanent(err)
	}
	stages, observe := p.stages(m, target, a.Digest)
	res, err := p.cfg.Registry.Push(ctx, ref, g, repo, observe, opts...)
	if err := stages.Wait(ctx); err != nil {
		return err
	}
	var rerr *registry.Error
	if errors.As(err, &rerr) {
		if d := rerr.Drift; d != nil {
			if _, err := p.bus.Emit(ctx, m.Event, events.DriftDetected, "", events.Drift{
				Target: target, Tag: d.Tag, Expected: d.Expected.String(), Found: d.Found.String(),
			}); err != nil {
				return err
			}
		}
		return fail(rerr)
	}
	if err != nil {
		return err
	}
	_, err = p.bus.Emit(ctx, m.Event, events.PushCompleted, "", events.PushResult{
		Target: target, Digest: res.Digest.String(), Graph: g, BlobsExisting: res.Existing, Requests: res.Requests,
		Promotion: &a, Evidence: a.Evidence,
	})
	return err
}

// stages reports each stage of a push as it ends: a [STAGE] log line and a
// push.stage event, sent without waiting for the bus. The handler waits
// for them before it publishes the push's outcome; if one was not stored,
// the delivery fails and the push is redone (cheaply: it is warm).
func (p *pusher) stages(m events.Message, target, digest string) (*events.Emitter, registry.Observer) {
	emitter := p.bus.Emitter(m.Event)
	return emitter, func(ctx context.Context, r registry.StageReport) {
		report := StageReport(target, digest, r)
		p.cfg.Log().Info(report.Line, "run_id", events.RunID(m.Event), "stage", r.Stage, "status", r.Status, "attempt", r.Attempt, "requests", r.Requests)
		emitter.Emit(ctx, events.PushStage, fmt.Sprintf("%s/%s/%d", r.Stage, r.Status, r.Attempt), report)
	}
}

// retryOr returns a transient registry error for the delivery to be
// retried, and reports any other as push.failed.
func (p *pusher) retryOr(err error, fail func(*registry.Error) error) error {
	e := registry.AsError(err)
	if e.Temporary() {
		return err
	}
	return fail(e)
}

func failure(e *registry.Error) events.Failure {
	return events.Failure{Stage: e.Stage, Class: string(e.Class), Message: e.Err.Error(), Hint: e.Hint}
}

// StageReport is the push.stage event data for one stage outcome.
func StageReport(target, dgst string, r registry.StageReport) events.StageReport {
	out := events.StageReport{
		Target: target, Digest: dgst, Stage: r.Stage, Status: r.Status, Detail: r.Detail,
		Total: r.Total, Existing: r.Existing, Uploaded: r.Uploaded, Mounted: r.Mounted, Bytes: r.Bytes,
		Requests: r.Requests, Attempt: r.Attempt, DurationMS: r.Duration.Milliseconds(), Line: r.Line(),
	}
	if r.Err != nil {
		f := failure(r.Err)
		out.Error = &f
	}
	return out
}

// TagOptions turns a tag guard into push options.
func TagOptions(g events.TagGuard) ([]registry.PushOption, error) {
	policy, err := registry.ParseTagPolicy(g.Policy)
	if err != nil {
		return nil, err
	}
	opts := []registry.PushOption{registry.WithTagPolicy(policy)}
	if g.Expect != "" {
		d, err := digest.Parse(g.Expect)
		if err != nil {
			return nil, fmt.Errorf("tag.expect: %w", err)
		}
		opts = append(opts, registry.ExpectTag(d))
	}
	return opts, nil
}
