package reporter

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/digestline/digestline/pkg/bus"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// The gates, by the name a rejection reports.
const (
	GateEnvironment       = "environment"          // the environment is in the chain
	GateVerified          = "verified"             // the digest was verified in this repository
	GatePreviousEnv       = "previous-environment" // it is promoted in the environment before (or was in this one: a rollback)
	GateTagDrift          = "tag-drift"            // the environment's tag points where the record says
	GateRequiredReferrers = "required-referrers"   // the artifacts the environment requires are attached
)

// requested handles promotion.requested: a person's request, through the gates.
func (r *reporter) requested(ctx context.Context, m bus.Message, req events.PromotionRequest) error {
	return r.decide(ctx, m.Event, req, m.Event.ID())
}

// verified handles verify.completed. For a build's own run, the digest is
// now verified: it is remembered and promoted to the run's environment (the
// first of the chain by default) through the gates. For a promotion's run,
// the environment's tag has moved and the digest verified again: the
// promotion is recorded, attested and announced.
func (r *reporter) verified(ctx context.Context, m bus.Message, vr events.VerifyResult) error {
	repo, _, err := splitTarget(vr.Target)
	if err != nil {
		return bus.Permanent(err)
	}
	trail := vr.Evidence
	trail.Verify = m.Event.ID()
	if vr.Promotion == nil {
		v := Verified{Repository: repo, Digest: vr.Digest, VerifiedAt: m.Event.Time().UTC(), RunID: events.RunID(m.Event), Evidence: trail}
		if err := r.store.markVerified(ctx, v, ""); err != nil {
			return err
		}
		to := cmp.Or(vr.PromoteTo, r.cfg.Environments[0])
		return r.decide(ctx, m.Event, events.PromotionRequest{Repository: repo, Digest: vr.Digest, To: to, RequestedBy: "pipeline"}, trail.Request)
	}

	a := vr.Promotion
	rec, made, err := r.store.record(ctx, events.Promotion{
		Environment: a.Environment, Repository: a.Repository, Digest: a.Digest, Tag: a.Tag,
		PromotedAt: m.Event.Time().UTC(), RunID: events.RunID(m.Event), RequestedBy: a.RequestedBy, Location: a.Location, Source: a.Source,
		Evidence: events.Evidence{Request: a.Evidence.Request, Build: a.Evidence.Build, Push: trail.Push, Verify: trail.Verify},
	})
	if err != nil {
		return err
	}
	if err := r.store.markVerified(ctx, Verified{Repository: rec.Repository, Digest: rec.Digest, VerifiedAt: rec.PromotedAt, RunID: rec.RunID, Evidence: rec.Evidence}, rec.Environment); err != nil {
		return err
	}
	if made { // an environment that held the digest already has its attestation
		if err := r.attest(ctx, rec); err != nil {
			return err
		}
	}
	ev, err := events.Follow(r.Bus.Source(), m.Event, events.Promoted, "", rec)
	if err != nil {
		return err
	}
	if !made {
		// The environment held this digest already: the run ends promoted,
		// with the record as it is, and the history shows one promotion.
		r.cfg.Log().Info(fmt.Sprintf("%s already holds %s@%s (since run %s): nothing to record", rec.Environment, rec.Repository, rec.Digest, rec.RunID), "run_id", events.RunID(m.Event))
		return r.Bus.Publish(ctx, ev)
	}
	if err := r.store.addHistory(ctx, rec.Environment, rec.Repository, HistoryEntry{
		Kind: "promoted", At: rec.PromotedAt, Promotion: &rec, RunID: rec.RunID, EventID: ev.ID(),
	}); err != nil {
		return err
	}
	r.cfg.Log().Info(fmt.Sprintf("promoted %s %s", rec.Environment, rec.Ref()), "run_id", rec.RunID)
	return r.Bus.Publish(ctx, ev)
}

// decide answers a promotion request — a person's, or a build run's own —
// with promotion.approved or promotion.rejected. The decision is stored
// under the request's event id before it is emitted, so a redelivered
// request gets the same answer even if the world moved in between (say, the
// approved tag move already happened).
func (r *reporter) decide(ctx context.Context, parent cloudevents.Event, req events.PromotionRequest, requestID string) error {
	d, found, err := r.store.decided(ctx, parent.ID())
	if err != nil {
		return err
	}
	if !found {
		if d, err = r.gates(ctx, req, requestID, parent.Time().UTC()); err != nil {
			return err // the registry or the bus failed us: try again
		}
		if d, err = r.store.decide(ctx, parent.ID(), d); err != nil {
			return err
		}
	}
	if a := d.Approval; a != nil {
		r.cfg.Log().Info(fmt.Sprintf("approved %s %s@%s: moving tag %s", a.Environment, a.Repository, a.Digest, a.Tag), "run_id", events.RunID(parent))
		_, err := r.Bus.Emit(ctx, parent, events.PromotionApproved, "", *a)
		return err
	}
	rej := *d.Rejection
	ev, err := events.Follow(r.Bus.Source(), parent, events.PromotionRejected, "", rej)
	if err != nil {
		return err
	}
	if err := r.store.addHistory(ctx, rej.Environment, rej.Repository, HistoryEntry{
		Kind: "rejected", At: rej.RejectedAt, Rejection: &rej, RunID: events.RunID(parent), EventID: ev.ID(),
	}); err != nil {
		return err
	}
	r.cfg.Log().Warn(fmt.Sprintf("rejected %s %s@%s at gate %s: %s", rej.Environment, rej.Repository, rej.Digest, rej.Gate, rej.Reason), "run_id", events.RunID(parent))
	return r.Bus.Publish(ctx, ev)
}

// gates checks a request against every gate, in order, and approves it or
// names the first gate that refuses. An error means a gate could not be
// checked (the registry or the bus is unreachable), not that it refused.
func (r *reporter) gates(ctx context.Context, req events.PromotionRequest, requestID string, at time.Time) (decision, error) {
	a, err := r.admit(ctx, req, requestID, at)
	var no *refusal
	if errors.As(err, &no) {
		return decision{Rejection: &events.Rejection{Environment: req.To, Repository: req.Repository, Digest: req.Digest, Gate: no.gate,
			Reason: no.reason, Hint: no.hint, RequestedBy: req.RequestedBy, RejectedAt: at}}, nil
	}
	if err != nil {
		return decision{}, err
	}
	return decision{Approval: a}, nil
}

// refusal is a gate's answer no: the gate, why, and what to do.
type refusal struct{ gate, hint, reason string }

func (e *refusal) Error() string { return e.gate + ": " + e.reason }

func refuse(gate, hint, format string, a ...any) error {
	return &refusal{gate: gate, hint: hint, reason: fmt.Sprintf(format, a...)}
}

// unreachable is a registry failure met at gate: a registry that fails for
// a moment is asked again (the request is retried); one that refuses for
// good refuses at the gate it blocks.
func unreachable(gate string, err error) error {
	e := failure.As(err)
	if e.Temporary() {
		return err
	}
	return refuse(gate, e.Hint, "cannot check the registry: %v", err)
}

// admit runs the gates in order: the approval when all pass, a *refusal
// naming the first that does not, or the error that kept one from being
// checked.
func (r *reporter) admit(ctx context.Context, req events.PromotionRequest, requestID string, at time.Time) (*events.Approval, error) {
	repo, v, err := r.inChain(ctx, req)
	if err != nil {
		return nil, err
	}
	place, tag, err := r.placeOf(req.To, req.Repository)
	if err != nil {
		return nil, refuse(GateEnvironment, "fix the environment's place (docs/promotion.md)", "%v", err)
	}
	// The tag's gate reads the environment's place, the evidence's gates
	// read the source: both at once (a round trip less to a registry far
	// away), their refusals still reported in the gates' order.
	var (
		got    string
		tagErr error
		wg     sync.WaitGroup
	)
	wg.Go(func() { got, tagErr = r.tagInPlace(ctx, req, place, tag) })
	source, err := r.evidenceGates(ctx, req, at)
	wg.Wait()
	if err = cmp.Or(tagErr, err); err != nil {
		return nil, err
	}
	a := &events.Approval{
		Environment: req.To, Repository: req.Repository, Digest: req.Digest, Tag: tag, Previous: got,
		RequestedBy: req.RequestedBy, Evidence: events.Evidence{Request: requestID, Build: v.Evidence.Build},
	}
	if place.String() != repo.String() {
		a.Location, a.Source = place.String(), source.String()
	}
	return a, nil
}

// evidenceGates checks the gates over what is attached to the digest: the
// referrers the environment requires, and its policy. The evidence is read
// where the digest comes from, which it returns: the repository builds are
// pushed to, or the previous environment's place when the promotion copies
// from there.
func (r *reporter) evidenceGates(ctx context.Context, req events.PromotionRequest, at time.Time) (name.Repository, error) {
	source, err := r.sourceOf(ctx, req)
	if err != nil {
		return source, err
	}
	reg, err := r.Registry.Open(ctx, source, false)
	if err != nil {
		return source, unreachable(GateVerified, err)
	}
	if err := r.requiredReferrers(ctx, reg, req); err != nil {
		return source, err
	}
	if clauses, err := r.checkPolicy(ctx, reg, req, at); err != nil {
		return source, unreachable(GatePolicy+"evidence", err)
	} else if failed := firstFailed(clauses); failed != nil {
		return source, refuse(GatePolicy+failed.Name, "meet the rule (docs/policy.md): digestline promote --dry-run shows every clause with its values",
			"%s", failed.Reason())
	}
	return source, nil
}

// inChain checks the gates of the promotion chain: the environment is in
// it, the digest was verified by this pipeline, and it is promoted in the
// environment before (or was in this one: a rollback). It returns the
// repository and the digest's verification.
func (r *reporter) inChain(ctx context.Context, req events.PromotionRequest) (name.Repository, Verified, error) {
	i := slices.Index(r.cfg.Environments, req.To)
	if i < 0 {
		return name.Repository{}, Verified{}, refuse(GateEnvironment, "promote to one of "+strings.Join(r.cfg.Environments, ", "),
			"%q is not in the promotion chain %s", req.To, strings.Join(r.cfg.Environments, " → "))
	}
	repo, err := name.NewRepository(req.Repository)
	if err != nil {
		return name.Repository{}, Verified{}, refuse(GateVerified, "name the repository as registry/path", "repository %q: %v", req.Repository, err)
	}
	if _, err := digest.Parse(req.Digest); err != nil {
		return name.Repository{}, Verified{}, refuse(GateVerified, "promote by digest: sha256:<64 hex>", "digest %q: %v", req.Digest, err)
	}
	v, ok, err := r.store.verifiedDigest(ctx, req.Repository, req.Digest)
	if err != nil {
		return name.Repository{}, Verified{}, err
	}
	if !ok {
		return name.Repository{}, Verified{}, refuse(GateVerified, "ship it through the pipeline first: only digests the verifier proved can be promoted",
			"%s@%s was never verified by this pipeline", req.Repository, req.Digest)
	}
	if i == 0 {
		return repo, v, nil
	}
	prevEnv := r.cfg.Environments[i-1]
	prev, ok, err := r.store.current(ctx, prevEnv, req.Repository)
	if err != nil {
		return name.Repository{}, Verified{}, err
	}
	rollback := slices.Contains(v.PromotedTo, req.To)
	if (!ok || prev.Digest != req.Digest) && !rollback {
		holds := "nothing"
		if ok {
			holds = prev.Digest
		}
		return name.Repository{}, Verified{}, refuse(GatePreviousEnv, fmt.Sprintf("promote it to %s first", prevEnv),
			"%s is not promoted in %s, which holds %s", req.Digest, prevEnv, holds)
	}
	return repo, v, nil
}

// tagInPlace checks the tag-drift gate: the environment's tag in its place
// points where the environment's record says, or at the digest already.
// It returns where the tag points ("" for nowhere).
func (r *reporter) tagInPlace(ctx context.Context, req events.PromotionRequest, place name.Repository, tag string) (string, error) {
	cur, hasCur, err := r.store.current(ctx, req.To, req.Repository)
	if err != nil {
		return "", err
	}
	there, err := r.Registry.Open(ctx, place, false)
	if err != nil {
		return "", unreachable(GateTagDrift, err)
	}
	found, present, err := there.HeadManifest(ctx, tag)
	if err != nil {
		return "", unreachable(GateTagDrift, err)
	}
	var want, got string
	if hasCur {
		want = cur.Digest
	}
	if present {
		got = found.Digest.String()
	}
	if got == want || got == req.Digest {
		return got, nil
	}
	hint := fmt.Sprintf("someone moved %s:%s outside the pipeline: inspect %s, then put the tag back on %s (or delete it) and promote again",
		place, tag, cmp.Or(got, "the tag"), cmp.Or(want, "nothing"))
	if hasCur && cur.Place() != place.String() {
		// The environment has moved to another place since its last
		// promotion: what it holds is to be brought along first.
		hint = fmt.Sprintf("%s now lives at %s, its record at %s: copy what it holds there first (digestline copy %s %s:%s), then promote again",
			req.To, place, cur.Place(), cur.Ref(), place, tag)
	}
	return "", refuse(GateTagDrift, hint, "tag %s points at %s, but %s's record says %s", tag, cmp.Or(got, "nothing"), req.To, cmp.Or(want, "nothing"))
}

// requiredReferrers checks that the artifacts the environment requires
// (by artifact type) are attached to the digest in reg.
func (r *reporter) requiredReferrers(ctx context.Context, reg *registry.Repo, req events.PromotionRequest) error {
	required := r.cfg.RequiredReferrers[req.To]
	if len(required) == 0 {
		return nil
	}
	refs, err := reg.Referrers(ctx, digest.Digest(req.Digest))
	if err != nil {
		return unreachable(GateRequiredReferrers, err)
	}
	var missing []string
	for _, t := range required {
		if !slices.ContainsFunc(refs, func(d v1.Descriptor) bool { return d.ArtifactType == t }) {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return refuse(GateRequiredReferrers, "attach them (digestline attach, or ship with --sbom) and promote again",
			"%s requires referrers of type %s; missing: %s", req.To, strings.Join(required, ", "), strings.Join(missing, ", "))
	}
	return nil
}

// sourceOf is where a promotion reads the digest and its evidence, and
// copies them from when the environment lives elsewhere: the previous
// environment's place when it holds the digest there, else the repository
// builds are pushed to.
func (r *reporter) sourceOf(ctx context.Context, req events.PromotionRequest) (name.Repository, error) {
	app, err := name.NewRepository(req.Repository)
	if err != nil {
		return name.Repository{}, err
	}
	i := slices.Index(r.cfg.Environments, req.To)
	if i <= 0 {
		return app, nil
	}
	prev, ok, err := r.store.current(ctx, r.cfg.Environments[i-1], req.Repository)
	if err != nil || !ok || prev.Digest != req.Digest || prev.Location == "" {
		return app, err
	}
	return name.NewRepository(prev.Location)
}

// checkPolicy evaluates the environment's policy rules (none without a
// policy for it).
func (r *reporter) checkPolicy(ctx context.Context, reg *registry.Repo, req events.PromotionRequest, at time.Time) ([]Clause, error) {
	if !r.cfg.Policy.Has(req.To) {
		return nil, nil
	}
	input, err := r.policyInput(ctx, reg, req, at)
	if err != nil {
		return nil, err
	}
	return r.cfg.Policy.Evaluate(req.To, input), nil
}

func firstFailed(clauses []Clause) *Clause {
	for i := range clauses {
		if !clauses[i].Passed {
			return &clauses[i]
		}
	}
	return nil
}

// tagOf is the tag an environment's promotions move.
func (r *reporter) tagOf(env string) string {
	return strings.ReplaceAll(r.cfg.TagFormat, "{env}", env)
}
