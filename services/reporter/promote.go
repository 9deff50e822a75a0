package reporter

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/tags"
	"github.com/google/go-containerregistry/pkg/name"
)

// requested handles promotion.requested: a person's request, through the gates.
func (r *reporter) requested(ctx context.Context, m bus.Message, req events.PromotionRequest) error {
	return r.decide(ctx, m.Event, req, m.Event.ID(), m.Event.Time().UTC())
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
		v := Verified{Repository: repo, Digest: vr.Digest, VerifiedAt: m.Event.Time().UTC(), RunID: events.RunID(m.Event), Evidence: trail, Commit: vr.Commit, Trust: vr.Trust}
		if err := r.store.markVerified(ctx, v, ""); err != nil {
			return err
		}
		to := cmp.Or(vr.PromoteTo, r.cfg.Environments[0])
		req := events.PromotionRequest{Repository: repo, Digest: vr.Digest, To: to, RequestedBy: "pipeline"}
		return r.decide(ctx, m.Event, req, trail.Request, cmp.Or(vr.RequestedAt, m.Event.Time().UTC()))
	}

	rec, made, err := r.keep(ctx, promotionOf(vr, m.Event))
	if later := (*recordedLater)(nil); errors.As(err, &later) {
		return r.movedOn(ctx, m, rec, later.current)
	}
	if err != nil {
		return err
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
	kind := "promoted"
	if rec.Rollback {
		kind = "rollback"
	}
	if err := r.store.addHistory(ctx, rec.Environment, rec.Repository, api.HistoryEntry{
		Kind: kind, At: rec.PromotedAt, Promotion: &rec, RunID: rec.RunID, EventID: ev.ID(),
	}); err != nil {
		return err
	}
	r.cfg.Log().Info(fmt.Sprintf("%s %s %s", kind, rec.Environment, rec.Ref()), "run_id", rec.RunID)
	return r.Bus.Publish(ctx, ev)
}

// keep records a promotion whose tag moved (store.record: made says
// whether this run made it current), remembers that the digest reached
// the environment, and attests it there. A *recordedLater error says a
// newer promotion was recorded first (but in an environment that takes
// every digest, which promotes this one all the same).
func (r *reporter) keep(ctx context.Context, p events.Promotion) (rec events.Promotion, made bool, err error) {
	rec, made, err = r.store.record(ctx, p)
	if later := (*recordedLater)(nil); errors.As(err, &later) && r.cfg.Policy.Queues(p.Environment) {
		// An environment that takes every digest: this one held the tag in
		// its turn, and is promoted, though a newer one was recorded first
		// and stays current.
		rec, made, err = p, true, nil
	}
	if err != nil {
		return rec, made, err
	}
	if err := r.store.markVerified(ctx, Verified{Repository: rec.Repository, Digest: rec.Digest, VerifiedAt: rec.PromotedAt, RunID: rec.RunID, Evidence: rec.Evidence, Commit: rec.Commit}, rec.Environment); err != nil {
		return rec, made, err
	}
	if made { // an environment that held the digest already has its attestation
		if err := r.attest(ctx, rec); err != nil {
			return rec, made, err
		}
	}
	return rec, made, nil
}

// promotionOf is the record of a promotion whose tag moved, verified again
// by the event verified (verify.completed, or release.verified for an
// image of a release): promoted at its time, in its run.
func promotionOf(vr events.VerifyResult, verified cloudevents.Event) events.Promotion {
	a := vr.Promotion
	p := events.Promotion{
		Environment: a.Environment, Repository: a.Repository, Digest: a.Digest, Tag: a.Tag, RunID: events.RunID(verified),
		PromotedAt: verified.Time().UTC(), PreviousDigest: a.Previous, RequestedBy: a.RequestedBy,
		RequestedAt: a.RequestedAt, Location: a.Location, Source: a.Source, Emergency: a.Emergency, Commit: a.Commit,
		Evidence: events.Evidence{Request: a.Evidence.Request, Build: a.Evidence.Build, Push: vr.Evidence.Push, Verify: verified.ID()},
	}
	if a.Rollback != nil {
		p.Rollback, p.Reason, p.Report = true, a.Rollback.Reason, a.Rollback.Report
	}
	return p
}

// decide answers a promotion request — a person's, or a build run's own —
// with promotion.approved or promotion.rejected. The decision is stored
// under the request's event id before it is emitted, so a redelivered
// request gets the same answer even if the world moved in between (say, the
// approved tag move already happened).
func (r *reporter) decide(ctx context.Context, parent cloudevents.Event, req events.PromotionRequest, requestID string, requestedAt time.Time) error {
	d, found, err := r.store.decided(ctx, parent.ID())
	if err != nil {
		return err
	}
	if !found {
		if err := r.awaitQueued(ctx, req.To, events.RunID(parent)); err != nil {
			return err
		}
		turn := tags.Request{RunID: events.RunID(parent), RequestedAt: requestedAt, Digest: req.Digest}
		if d, err = r.gates(ctx, req, requestID, parent.Time().UTC(), turn); err != nil {
			return err // the registry or the bus failed us: try again
		}
		if d, err = r.store.decide(ctx, parent.ID(), d); err != nil {
			return err
		}
	}
	return r.announce(ctx, parent, d)
}

// announce emits a decision on the request parent: promotion.approved
// (release.approved for a release), superseded, or promotion.rejected,
// filed in the history.
func (r *reporter) announce(ctx context.Context, parent cloudevents.Event, d decision) error {
	if ra := d.Release; ra != nil {
		r.cfg.Log().Info(fmt.Sprintf("approved release %s for %s: moving %d tags", ra.Name, ra.Environment, len(ra.Images)), "run_id", events.RunID(parent))
		_, err := r.Bus.Emit(ctx, parent, events.ReleaseApproved, "", *ra)
		return err
	}
	if a := d.Approval; a != nil {
		r.cfg.Log().Info(fmt.Sprintf("approved %s %s@%s: moving tag %s", a.Environment, a.Repository, a.Digest, a.Tag), "run_id", events.RunID(parent))
		_, err := r.Bus.Emit(ctx, parent, events.PromotionApproved, "", *a)
		return err
	}
	if s := d.Supersession; s != nil {
		r.cfg.Log().Info(fmt.Sprintf("superseded: %s %s@%s: run %s, requested later, moved tag %s to %s", s.Environment, s.Repository, s.Digest, s.By, s.Tag, s.ByDigest),
			"run_id", events.RunID(parent))
		_, err := r.Bus.Emit(ctx, parent, events.Superseded, "", *s)
		return err
	}
	rej := *d.Rejection
	ev, err := events.Follow(r.Bus.Source(), parent, events.PromotionRejected, "", rej)
	if err != nil {
		return err
	}
	if err := r.store.addHistory(ctx, rej.Environment, rej.Repository, api.HistoryEntry{
		Kind: "rejected", At: rej.RejectedAt, Rejection: &rej, RunID: events.RunID(parent), EventID: ev.ID(),
	}); err != nil {
		return err
	}
	r.cfg.Log().Warn(fmt.Sprintf("rejected %s %s@%s at gate %s: %s", rej.Environment, rej.Repository, rej.Digest, rej.Gate, rej.Reason), "run_id", events.RunID(parent))
	return r.Bus.Publish(ctx, ev)
}

// inChain checks the gates of the promotion chain (chainGates) over what
// the store holds of the digest and of the environment before. It returns
// the repository and the digest's verification.
func (r *reporter) inChain(ctx context.Context, req events.PromotionRequest) (name.Repository, Verified, error) {
	repo, err := requestGates(r.cfg.Environments, req)
	if err != nil {
		return name.Repository{}, Verified{}, err
	}
	v, verified, err := r.store.verifiedDigest(ctx, req.Repository, req.Digest)
	if err != nil {
		return name.Repository{}, Verified{}, err
	}
	var prev *events.Promotion
	if i := slices.Index(r.cfg.Environments, req.To); verified && i > 0 {
		cur, found, err := r.store.current(ctx, r.cfg.Environments[i-1], req.Repository)
		if err != nil {
			return name.Repository{}, Verified{}, err
		}
		if found {
			prev = &cur
		}
	}
	if err := chainGates(r.cfg.Environments, req, v, verified, prev); err != nil {
		return name.Repository{}, Verified{}, err
	}
	return repo, v, nil
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

// movedOn ends a promotion whose tag moved, in order, and then on to a
// newer request's digest that was recorded before it: the newer record
// stays current, the history shows this digest held the tag between the
// two (so every record's previous digest is in it), and the run ends
// superseded, so that no deployer is told to deploy it after the newer one.
func (r *reporter) movedOn(ctx context.Context, m bus.Message, rec, current events.Promotion) error {
	s := events.Supersession{Tag: rec.Place() + ":" + rec.Tag, Environment: rec.Environment, Repository: rec.Repository, Digest: rec.Digest,
		By: current.RunID, ByDigest: current.Digest, Step: "record", Evidence: rec.Evidence}
	ev, err := events.Follow(r.Bus.Source(), m.Event, events.Superseded, "", s)
	if err != nil {
		return err
	}
	if err := r.store.addHistory(ctx, rec.Environment, rec.Repository, api.HistoryEntry{
		Kind: "superseded", At: rec.PromotedAt, Promotion: &rec, RunID: rec.RunID, EventID: ev.ID(),
	}); err != nil {
		return err
	}
	r.cfg.Log().Info(fmt.Sprintf("superseded: %s held %s until run %s, requested later, moved it on to %s", rec.Environment, rec.Ref(), current.RunID, current.Digest),
		"run_id", rec.RunID)
	return r.Bus.Publish(ctx, ev)
}

// tagOf is the tag an environment's promotions move.
func (r *reporter) tagOf(env string) string {
	return strings.ReplaceAll(r.cfg.TagFormat, "{env}", env)
}
