package pusher

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/pkg/tags"
	"github.com/digestline/digestline/pkg/verify"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
)

// Config configures the pusher.
type Config struct {
	service.Deps
	// Proof is how a promotion's copy is proven at its destination before
	// the tag moves (verify.Options.OrDefaults): its Keys are the trusted
	// public keys (DIGESTLINE_TRUSTED_KEYS), and the copy must carry a
	// signature by one of them there, every signature and attestation
	// verifying.
	Proof verify.Options
}

// Run pushes what the builder built (build.completed) and moves the
// environment tags of approved promotions (promotion.approved) until ctx
// is cancelled.
func Run(ctx context.Context, cfg Config) error {
	w, err := cfg.Worker(ctx, "pusher")
	if err != nil {
		return err
	}
	cfg.Proof = cfg.Proof.OrDefaults()
	p := &pusher{Worker: w, cfg: cfg}
	r := p.Bus.Router(bus.ConsumerSpec{Durable: "pusher"})
	r.Handle(events.BuildCompleted, bus.Data(p.push))
	r.Handle(events.PromotionApproved, bus.Data(p.promote))
	r.Handle(events.ReleaseApproved, bus.Data(p.release))
	return r.Run(ctx)
}

type pusher struct {
	service.Worker
	cfg Config
}

// push pushes a build's graph to its target, stage by stage.
func (p *pusher) push(ctx context.Context, m bus.Message, build events.BuildResult) error {
	evidence := build.Evidence
	evidence.Build = m.Event.ID()
	fail := func(err error) error {
		return p.Bus.Fail(ctx, m, events.PushFailed, err, events.Failure{Target: build.Target, Digest: build.Graph.Root.Digest.String(), Evidence: evidence})
	}
	ref, err := name.ParseReference(build.Target)
	if err != nil {
		return fail(&failure.Error{Class: failure.Schema, Stage: events.StageAuth, Err: err,
			Hint: "the target must be an image reference such as registry.example.com/team/app:tag"})
	}
	opts, err := registry.TagOptions(build.Tag)
	if err != nil {
		return fail(&failure.Error{Class: failure.Schema, Stage: events.StageTagUpdate, Err: err,
			Hint: "set tag.policy to fail, force or if-absent, and tag.expect to a digest"})
	}
	// Upload progress goes out a few times a second for whoever watches
	// (digestline ship draws it); it is not stored.
	feed := bus.NewProgressFeed(p.cfg.JetStream.Conn(), events.RunID(m.Event), build.Target, build.Graph.Root.Digest.String())
	feedCtx, stopFeed := context.WithCancel(ctx)
	fed := make(chan struct{})
	go func() { defer close(fed); feed.Run(feedCtx, 250*time.Millisecond) }()
	requestedAt := cmp.Or(build.RequestedAt, m.Event.Time().UTC())
	opts = append(opts, registry.WithProgress(feed.Update))
	if build.Tag.Policy != string(registry.TagIfAbsent) { // a tag set once for good is not a tag runs take turns at
		opts = append(opts, p.inOrder(m, tags.Request{Digest: build.Graph.Root.Digest.String(), RequestedAt: requestedAt}, nil))
	}
	// Small blobs come in the event (oci.EmbedLimit); the graph goes on without them.
	blobs := oci.Embedded(&build.Graph, p.Blobs)
	res, err := p.pushStages(ctx, m, "", ref, build.Graph, blobs, opts...)
	stopFeed()
	<-fed
	if s := (*tags.SupersededError)(nil); errors.As(err, &s) {
		// A newer run moved the build's tag first: the tag stays there,
		// and the run goes on by digest. Its environment's tag decides
		// whether it is superseded too, or (an environment that takes
		// every digest) takes its turn.
		p.cfg.Log().Info(fmt.Sprintf("tag left to the newer run: %s", s.Overtaken()), "run_id", events.RunID(m.Event), "tag", s.Tag)
		err = nil
	}
	if err != nil {
		return fail(err)
	}
	_, err = p.Bus.Emit(ctx, m.Event, events.PushCompleted, "", events.PushResult{
		Target: build.Target, Digest: res.Digest.String(), Graph: build.Graph,
		BlobsUploaded: res.Uploaded, BlobsExisting: res.Existing, BlobsMounted: res.Mounted,
		BytesUploaded: res.BytesUploaded, Requests: res.Requests, PromoteTo: build.PromoteTo,
		RequestedAt: requestedAt, Commit: build.Commit, Evidence: evidence,
	})
	return err
}

// inOrder moves the push's tag for req (the message's run) in the order
// of the runs' requests (package tags): a run overtaken by a newer request
// for the tag leaves it where that request put it. moved, when not nil,
// learns the move.
func (p *pusher) inOrder(m bus.Message, req tags.Request, moved *tags.Move) registry.PushOption {
	req.RunID = events.RunID(m.Event)
	return registry.MoveTagVia(func(ctx context.Context, tag string, move func(context.Context, []string) (string, error)) (string, error) {
		done, err := p.Tags.Move(ctx, tag, req, move)
		if moved != nil {
			*moved = done
		}
		return done.From, err
	})
}

// superseded ends a promotion overtaken at its tag move: the digest stays
// in the registry, and the environment's tag where the newer run put it.
func (p *pusher) superseded(ctx context.Context, m bus.Message, s *tags.SupersededError, data events.Supersession) error {
	data.Tag, data.By, data.ByDigest = s.Tag, s.By.RunID, s.By.Digest
	p.cfg.Log().Info(fmt.Sprintf("superseded: %s", s.Overtaken()), "run_id", events.RunID(m.Event), "tag", s.Tag)
	_, err := p.Bus.Emit(ctx, m.Event, events.Superseded, "", data)
	return err
}

// promote moves an environment's tag to an approved digest (move), and
// sends it to be verified again where the tag is (push.completed).
func (p *pusher) promote(ctx context.Context, m bus.Message, a events.Approval) error {
	res, err := p.move(ctx, m, a, "")
	if s := (*tags.SupersededError)(nil); errors.As(err, &s) {
		return p.superseded(ctx, m, s, events.Supersession{Environment: a.Environment, Repository: a.Repository, Digest: a.Digest, Step: "promote", Evidence: a.Evidence})
	}
	if err != nil {
		return p.Bus.Fail(ctx, m, events.PushFailed, err, events.Failure{Target: a.Place() + ":" + a.Tag, Digest: a.Digest, Evidence: a.Evidence})
	}
	_, err = p.Bus.Emit(ctx, m.Event, events.PushCompleted, "", res)
	return err
}

// move moves an environment's tag to an approved digest through the same
// stages as any push, and the tag moves only from where the gates saw it
// (drift protection). In the environment's own repository the manifest is
// found, so nothing is uploaded. When the environment lives elsewhere
// (a.Location), the digest is copied there from a.Source with everything
// attached to it, registry to registry, and proven there — every byte, and
// with trusted keys every signature — before the tag moves. It returns
// what push.completed says of the move; key tells the stages' events of
// one image of a release from another's.
func (p *pusher) move(ctx context.Context, m bus.Message, a events.Approval, key string) (events.PushResult, error) {
	target := a.Place() + ":" + a.Tag
	ref, err := name.NewTag(target)
	if err != nil {
		return events.PushResult{}, &failure.Error{Class: failure.Schema, Stage: events.StageTagUpdate, Err: err, Hint: "the environment's tag format makes no valid tag"}
	}
	from, err := name.NewRepository(cmp.Or(a.Source, a.Repository))
	if err != nil {
		return events.PushResult{}, &failure.Error{Class: failure.Schema, Stage: events.StageAuth, Err: err, Hint: "name the repository as registry/path"}
	}
	d, err := digest.Parse(a.Digest)
	if err != nil {
		return events.PushResult{}, &failure.Error{Class: failure.Schema, Stage: events.StageManifestCheck, Err: err, Hint: "promote by digest: sha256:<64 hex>"}
	}
	// The graph is read back from the registry: the digest was pushed and
	// verified before, and the verifier compares against this graph again.
	// Its manifests are read once, however many stages read them again.
	repo, err := p.Registry.Open(ctx, from, false)
	if err != nil {
		return events.PushResult{}, err
	}
	repo = repo.Shared()
	copying := from.String() != ref.Context().String()
	g, src, err := repo.Graph(ctx, d, copying)
	if errors.Is(err, failure.NotFound) {
		err = &failure.Error{Class: failure.NotFound, Stage: events.StageManifestCheck,
			Err: fmt.Errorf("%s@%s is not in the registry: %w", from, a.Digest, err), Hint: "the approved digest was deleted: ship it again"}
	}
	if err != nil {
		return events.PushResult{}, err
	}
	// The tag moves from where the gates saw it, or from where a run
	// requested before this one moved it since.
	opts := []registry.PushOption{registry.WithTagPolicy(registry.TagFail), registry.SeenAt(digest.Digest(a.Previous))}
	if copying {
		// Proven at the destination before the tag moves: each blob is
		// hashed there as soon as it has arrived, while the rest is copied.
		proof := verify.NewAhead(ctx, p.Registry, ref.Context().Digest(a.Digest), g, p.cfg.Proof)
		defer proof.Close()
		opts = append(opts, registry.MountFrom(from), registry.VerifyBeforeTag(proof))
	} else {
		opts = append(opts, registry.ManifestsPresent()) // the graph was read from there just now
	}
	requestedAt := cmp.Or(a.RequestedAt, m.Event.Time().UTC())
	var moved tags.Move
	res, err := p.pushStages(ctx, m, key, ref, g, src, append(opts, p.inOrder(m, tags.Request{Digest: a.Digest, RequestedAt: requestedAt, Promotes: true}, &moved))...)
	if err != nil {
		return events.PushResult{}, err
	}
	// The environment's previous digest is the promotion's before this one
	// in the order the moves landed: the gates saw the tag earlier.
	a.Previous = moved.Held
	return events.PushResult{
		Target: target, Digest: res.Digest.String(), Graph: g,
		BlobsUploaded: res.Uploaded, BlobsExisting: res.Existing, BlobsMounted: res.Mounted, BytesUploaded: res.BytesUploaded, Requests: res.Requests,
		Promotion: &a, RequestedAt: requestedAt, Evidence: a.Evidence,
	}, nil
}

// pushStages pushes g to ref, reporting each stage as it ends: a [STAGE]
// log line and a push.stage event, sent without waiting for the bus. They
// are all stored before it returns; if one was not, the delivery fails and
// the push is redone (cheaply: it is warm). A tag found where it should not
// be is reported as drift.detected before the push's failure. key, when
// not "", sets the events of one push of a run apart from another's.
func (p *pusher) pushStages(ctx context.Context, m bus.Message, key string, ref name.Reference, g oci.Graph, src oci.BlobReader, opts ...registry.PushOption) (registry.PushResult, error) {
	emitter := p.Bus.Emitter(m.Event)
	observe := func(ctx context.Context, r events.StageReport) {
		p.cfg.Log().Info(r.Line, "run_id", events.RunID(m.Event), "stage", r.Stage, "status", r.Status, "attempt", r.Attempt, "requests", r.Requests)
		emitter.Emit(ctx, events.PushStage, fmt.Sprintf("%s%s/%s/%d", key, r.Stage, r.Status, r.Attempt), r)
	}
	res, err := p.Registry.Push(ctx, ref, g, src, observe, opts...)
	if werr := emitter.Wait(ctx); werr != nil {
		return res, werr // the bus's failure: the push is redone on redelivery
	}
	var ferr *failure.Error
	if errors.As(err, &ferr) && ferr.Drift != nil {
		d := ferr.Drift
		if _, derr := p.Bus.Emit(ctx, m.Event, events.DriftDetected, key, events.Drift{
			Target: ref.String(), Tag: d.Tag, Expected: d.Expected.String(), Found: d.Found.String(),
		}); derr != nil {
			return res, derr
		}
	}
	return res, err
}
