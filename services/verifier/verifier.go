package verifier

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/pkg/tags"
	"github.com/digestline/digestline/pkg/verify"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	"go.opentelemetry.io/otel/metric"
)

// Config configures the verifier.
type Config struct {
	service.Deps
	// Proof is how every push is proven (verify.Options.OrDefaults): with
	// Keys, the trusted public keys (DIGESTLINE_TRUSTED_KEYS), every image
	// must carry a signature by one of them; Proven remembers the evidence
	// proven, so a digest verified again has only new referrers read.
	Proof verify.Options
}

// Run verifies what the pusher pushed (push.completed, release.moved)
// and what other tools pushed (admission.requested) until ctx is
// cancelled.
func Run(ctx context.Context, cfg Config) error {
	w, err := cfg.Worker(ctx, "verifier")
	if err != nil {
		return err
	}
	cfg.Proof = cfg.Proof.OrDefaults()
	v := &verifier{Worker: w, cfg: cfg}
	// Instrument errors only say a name is malformed; this one is fixed.
	v.bytesVerified, _ = cfg.Meters().Meter("github.com/digestline/digestline/services/verifier").Int64Counter("digestline.verify.bytes",
		metric.WithDescription("Bytes pulled and hashed by verifications that passed"), metric.WithUnit("By"))
	r := v.Bus.Router(bus.ConsumerSpec{Durable: "verifier"})
	r.Handle(events.PushCompleted, bus.Data(v.verify))
	r.Handle(events.ReleaseMoved, bus.Data(v.verifyRelease))
	r.Handle(events.AdmissionRequested, bus.Data(v.admit))
	return r.Run(ctx)
}

type verifier struct {
	service.Worker
	cfg           Config
	bytesVerified metric.Int64Counter
}

// verify proves a push (prove) and sends it on to the reporter.
func (v *verifier) verify(ctx context.Context, m bus.Message, push events.PushResult) error {
	res, err := v.prove(ctx, m, push, "")
	if err != nil {
		return v.Bus.Fail(ctx, m, events.VerifyFailed, err, events.Failure{Target: push.Target, Digest: push.Digest, Report: failure.Report{Stage: "verify"}, Evidence: res.Evidence})
	}
	_, err = v.Bus.Emit(ctx, m.Event, events.VerifyCompleted, "", res)
	return err
}

// verifyRelease proves every image of a release where its tag moved, and
// sends them on to the reporter as one. The first image that fails ends
// the release's run, naming it; the tags stay where the release moved
// them (they were proven before they moved: what fails now is the
// registry's copy, which a person looks at).
func (v *verifier) verifyRelease(ctx context.Context, m bus.Message, rm events.ReleaseMoves) error {
	out := events.ReleaseVerification{Name: rm.Name, Environment: rm.Environment, RequestedAt: rm.RequestedAt}
	for i, push := range rm.Images {
		res, err := v.prove(ctx, m, push, strconv.Itoa(i))
		if err != nil {
			f := events.Failure{Target: push.Target, Digest: push.Digest, Report: failure.Report{Stage: "verify"}, Evidence: res.Evidence,
				Release: &events.ReleaseFailure{Name: rm.Name, Environment: rm.Environment, Image: push.Promotion.Repository + "@" + push.Digest}}
			return v.Bus.Fail(ctx, m, events.VerifyFailed, err, f)
		}
		out.Images = append(out.Images, res)
	}
	_, err := v.Bus.Emit(ctx, m.Event, events.ReleaseVerified, "", out)
	return err
}

// prove pulls the pushed digest and proves every byte against the graph
// that was built, and that the pushed tag still points at it. key, when
// not "", sets its drift.detected apart from another push's of the run.
func (v *verifier) prove(ctx context.Context, m bus.Message, push events.PushResult, key string) (events.VerifyResult, error) {
	trail := push.Evidence
	trail.Push = m.Event.ID()
	res := events.VerifyResult{Target: push.Target, Digest: push.Digest, PromoteTo: push.PromoteTo, Promotion: push.Promotion, RequestedAt: push.RequestedAt, Commit: push.Commit, Evidence: trail}
	target, err := name.ParseReference(push.Target)
	if err != nil {
		return res, &failure.Error{Class: failure.Schema, Stage: "verify", Err: err, Hint: "the pushed target is no image reference"}
	}
	ref := target.Context().Digest(push.Digest)
	ctx, span := v.cfg.Traces().Tracer("github.com/digestline/digestline/services/verifier").Start(ctx, "verify "+ref.String())
	defer span.End()
	// The tag is looked up while the digest is proven: one round trip
	// less. Its answer counts only when the proof holds.
	tag, tagged := target.(name.Tag)
	var tagErr error
	var looked sync.WaitGroup
	if tagged {
		looked.Go(func() { tagErr = verify.Tag(ctx, v.Registry, tag, digest.Digest(push.Digest)) })
	}
	opts := v.cfg.Proof
	if push.Promotion != nil && push.Promotion.Trust != nil { // an admitted image's
		if opts, err = v.trusting(*push.Promotion.Trust); err != nil {
			return res, err
		}
	}
	rep, err := verify.Image(ctx, v.Registry, ref, &push.Graph, opts)
	looked.Wait()
	if tagged && err == nil {
		var check string
		check, err = v.tagCheck(ctx, m, push, tag, tagErr)
		rep.Checks = append(rep.Checks, check)
		if drift := (*failure.Error)(nil); errors.As(err, &drift) && drift.Class == failure.Conflict {
			if _, err := v.Bus.Emit(ctx, m.Event, events.DriftDetected, key, events.Drift{
				Target: push.Target, Tag: tag.TagStr(), Expected: push.Digest, Found: drift.Mismatches[0].Found,
			}); err != nil {
				return res, err
			}
		}
	}
	if err != nil {
		span.RecordError(err)
		return res, err
	}
	v.proven(ctx, m, push.Digest, rep)
	res.Descriptors, res.BytesHashed, res.Checks = rep.Descriptors, rep.BytesHashed, rep.Checks
	return res, nil
}

// proven logs a proof's [VERIFY] lines and counts its bytes.
func (v *verifier) proven(ctx context.Context, m bus.Message, digest string, rep verify.Report) {
	log := v.cfg.Log().With("run_id", events.RunID(m.Event))
	for _, c := range rep.Checks {
		log.Info(c, "digest", digest)
	}
	v.bytesVerified.Add(ctx, rep.BytesHashed)
}

// tagCheck is the [VERIFY] line of the pushed tag, given verify.Tag's
// answer: the tag points at the digest; or a newer request of the
// pipeline moved it on since (package tags), which is no drift; or the
// drift.
func (v *verifier) tagCheck(ctx context.Context, m bus.Message, push events.PushResult, tag name.Tag, tagErr error) (string, error) {
	if tagErr == nil {
		return fmt.Sprintf("[VERIFY] tag %s points at the digest", tag.TagStr()), nil
	}
	drift := (*failure.Error)(nil)
	if !errors.As(tagErr, &drift) || drift.Class != failure.Conflict {
		return "", tagErr
	}
	repo, err := v.Registry.Open(ctx, tag.Context(), false)
	if err != nil {
		return "", err
	}
	looked := false
	found, mover, err := v.Tags.Mover(ctx, tag.Name(), func(ctx context.Context) (string, error) {
		if !looked { // verify.Tag's look
			looked = true
			return strings.TrimPrefix(drift.Mismatches[0].Found, "nothing"), nil
		}
		d, ok, err := repo.HeadManifest(ctx, tag.TagStr())
		if !ok || err != nil {
			return "", err
		}
		return d.Digest.String(), nil
	})
	if err != nil {
		return "", err
	}
	this := tags.Request{RunID: events.RunID(m.Event), RequestedAt: cmp.Or(push.RequestedAt, m.Event.Time().UTC())}
	if found == push.Digest {
		return fmt.Sprintf("[VERIFY] tag %s points at the digest", tag.TagStr()), nil
	}
	if mover == nil || !mover.Newer(this) {
		return "", tagErr
	}
	return fmt.Sprintf("[VERIFY] tag %s moved on to %s since, for run %s (requested later)", tag.TagStr(), mover.Digest, mover.RunID), nil
}
