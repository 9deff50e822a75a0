package reporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/pkg/tags"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
)

// Releases. A release names several images, by digest, that were tested
// together, and promotes them as one: every gate for every image first
// (releaseGates), then the pusher moves every tag, putting back the ones
// it moved if one fails; the verifier proves them all; then each image is
// recorded as any promotion is, and the release once: its record (by
// environment and name, in the controls bucket), a history entry of kind
// release on the environment's list and each image's digest, and one
// promoted event listing every image. A release that fails is a history
// entry of kind release-failed, naming the image and what was put back.

// GateRelease refuses a release request that names no image, or one
// repository twice.
const GateRelease = "release"

func releaseKey(env, name string) string { return "release." + envToken(env) + "." + repoToken(name) }

// releaseOf returns the environment's record of the release name.
func (s *store) releaseOf(ctx context.Context, env, name string) (events.Promotion, bool, error) {
	var rec events.Promotion
	_, found, err := getJSON(ctx, s.controls, releaseKey(env, name), &rec)
	return rec, found, err
}

// releaseRequested handles release.requested: every image through the
// gates, decided once (as decide does for one image).
func (r *reporter) releaseRequested(ctx context.Context, m bus.Message, rr events.ReleaseRequest) error {
	d, found, err := r.store.decided(ctx, m.Event.ID())
	if err != nil {
		return err
	}
	if !found {
		if d, err = r.releaseGates(ctx, m.Event, rr); err != nil {
			return err
		}
		if d, err = r.store.decide(ctx, m.Event.ID(), d); err != nil {
			return err
		}
	}
	return r.announce(ctx, m.Event, d)
}

// releaseGates checks every image of a release against every gate, in
// the release's order: the release is approved when all pass, refused
// with the first image a gate refuses, or superseded when a newer request
// moved one of its tags already.
func (r *reporter) releaseGates(ctx context.Context, parent cloudevents.Event, rr events.ReleaseRequest) (decision, error) {
	at := parent.Time().UTC()
	if err := rr.Check(); err != nil {
		return decision{Rejection: &events.Rejection{Environment: rr.To, Gate: GateRelease, Reason: err.Error(), Release: rr.Name,
			Hint: "name each repository once, by digest", RequestedBy: rr.RequestedBy, RejectedAt: at}}, nil
	}
	ra := &events.ReleaseApproval{Name: rr.Name, Environment: rr.To, RequestedAt: at}
	for i, im := range rr.Images {
		req := events.PromotionRequest{Repository: im.Repository, Digest: im.Digest, To: rr.To, RequestedBy: rr.RequestedBy, Rollback: rr.Rollback}
		d, err := r.gates(ctx, req, parent.ID(), at, tags.Request{RunID: events.RunID(parent), RequestedAt: at, Digest: im.Digest})
		if err != nil {
			return decision{}, err
		}
		if rej := d.Rejection; rej != nil {
			rej.Release = rr.Name
			rej.Reason = fmt.Sprintf("release %s, image %d of %d (%s): %s; no image moved", rr.Name, i+1, len(rr.Images), im.Ref(), rej.Reason)
			return d, nil
		}
		if s := d.Supersession; s != nil {
			s.Release = rr.Name
			return d, nil
		}
		ra.Images = append(ra.Images, *d.Approval)
	}
	return decision{Release: ra}, nil
}

// releaseVerified handles release.verified: every image's tag moved and
// was proven again. Each image is recorded, attested and filed in its
// history as any promotion; then the release's record, its history entry
// and its one promoted event.
func (r *reporter) releaseVerified(ctx context.Context, m bus.Message, rv events.ReleaseVerification) error {
	rel := events.Promotion{Environment: rv.Environment, PromotedAt: m.Event.Time().UTC(), RunID: events.RunID(m.Event),
		RequestedAt: rv.RequestedAt, Release: &events.ReleaseRecord{Name: rv.Name}}
	made := make([]bool, len(rv.Images))
	for i, vr := range rv.Images {
		p := promotionOf(vr, m.Event)
		p.Release = &events.ReleaseRecord{Name: rv.Name}
		rec, ok, err := r.keep(ctx, p)
		if later := (*recordedLater)(nil); errors.As(err, &later) {
			// A newer promotion of this image was recorded first: it stays
			// current, and the release lists what it moved.
			rec, ok, err = p, false, nil
		}
		if err != nil {
			return err
		}
		rel.Release.Images, made[i] = append(rel.Release.Images, rec), ok
		rel.RequestedBy, rel.Evidence = rec.RequestedBy, events.Evidence{Request: rec.Evidence.Request, Verify: m.Event.ID()}
		rel.Rollback, rel.Reason = rec.Rollback, rec.Reason
	}
	ev, err := events.Follow(r.Bus.Source(), m.Event, events.Promoted, "", rel)
	if err != nil {
		return err
	}
	for i, rec := range rel.Release.Images {
		if !made[i] {
			continue
		}
		kind := "promoted"
		if rec.Rollback {
			kind = "rollback"
		}
		if err := r.store.addHistory(ctx, rec.Environment, rec.Repository, api.HistoryEntry{
			Kind: kind, At: rec.PromotedAt, Promotion: &rec, RunID: rec.RunID, EventID: ev.ID() + "-" + strconv.Itoa(i),
		}); err != nil {
			return err
		}
	}
	if err := r.store.putJSON(ctx, r.store.controls, releaseKey(rel.Environment, rv.Name), rel); err != nil {
		return err
	}
	if err := r.store.addHistory(ctx, rel.Environment, "", api.HistoryEntry{
		Kind: "release", At: rel.PromotedAt, Promotion: &rel, RunID: rel.RunID, EventID: ev.ID(),
	}); err != nil {
		return err
	}
	r.cfg.Log().Info(fmt.Sprintf("released %s to %s: %d images", rv.Name, rel.Environment, len(rel.Release.Images)), "run_id", rel.RunID)
	return r.Bus.Publish(ctx, ev)
}

// releaseFailed handles push.failed and verify.failed: a release's is
// filed in the environment's history (release-failed), naming the image
// that failed and what became of the tags moved before it. Any other
// run's failure is the run's alone.
func (r *reporter) releaseFailed(ctx context.Context, m bus.Message, f events.Failure) error {
	if f.Release == nil {
		return nil
	}
	return r.store.addHistory(ctx, f.Release.Environment, "", api.HistoryEntry{
		Kind: "release-failed", At: m.Event.Time().UTC(), Failure: &f, RunID: events.RunID(m.Event), EventID: m.Event.ID(),
	})
}

// putJSON writes v under key.
func (s *store) putJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, key, b); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

// requestRelease answers POST /v1/releases for an authorized caller: it
// publishes release.requested and answers 202 with the run to follow.
func (r *reporter) requestRelease(w http.ResponseWriter, req *http.Request) {
	who, ok := r.authorize(w, req)
	if !ok {
		return
	}
	var body api.ReleaseRequest
	if !decodeBody(w, req, &body, `{"name": "shop-2026.12.1", "to": "prod", "images": ["registry/repo@sha256:…", …]}`) {
		return
	}
	rr, err := body.Request()
	if err == nil && !slices.Contains(r.cfg.Environments, rr.To) {
		err = fmt.Errorf("%q is not in the promotion chain %s", rr.To, strings.Join(r.cfg.Environments, " → "))
	}
	if err != nil {
		service.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	rr.RequestedBy = who
	r.startRelease(w, req, rr, uuid.NewString())
}

// startRelease publishes rr in a new run and answers 202 with it.
func (r *reporter) startRelease(w http.ResponseWriter, req *http.Request, rr events.ReleaseRequest, runID string) {
	ev, err := r.Bus.Start(req.Context(), events.ReleaseRequested, runID, rr.Name, rr)
	if err != nil {
		service.WriteError(w, http.StatusServiceUnavailable, "the bus did not take the release: "+err.Error())
		return
	}
	r.cfg.Log().Info(fmt.Sprintf("release %s of %d images to %s asked by %s", rr.Name, len(rr.Images), rr.To, rr.RequestedBy), "run_id", runID)
	service.WriteJSON(w, http.StatusAccepted, api.PromoteAccepted{RunID: runID, EventID: ev.ID()})
}

// getRelease answers GET /v1/releases/{env}/{name}: the environment's
// record of the release (each image's promotion), 404 when it has none.
func (r *reporter) getRelease(w http.ResponseWriter, req *http.Request) {
	env, name := req.PathValue("env"), req.PathValue("name")
	rec, found, err := r.store.releaseOf(req.Context(), env, name)
	writeRecord(w, rec, found, err, fmt.Sprintf("%s has no release %s (GET /v1/history?env=%s&kind=release lists its releases)", env, name, env))
}

// rollbackRelease is the release request that rolls a release back as
// one: every image of it back to the digest the environment held before
// the release. Each image must have held one.
func (r *reporter) rollbackRelease(ctx context.Context, env, name, reason string) (events.ReleaseRequest, int, error) {
	rec, found, err := r.store.releaseOf(ctx, env, name)
	if err != nil {
		return events.ReleaseRequest{}, http.StatusServiceUnavailable, err
	}
	if !found {
		return events.ReleaseRequest{}, http.StatusNotFound, fmt.Errorf("%s has no release %s to roll back", env, name)
	}
	rr := events.ReleaseRequest{Name: name, To: env, Rollback: &events.Rollback{Reason: reason, From: "release " + name}}
	for _, im := range rec.Release.Images {
		if im.PreviousDigest == "" {
			return rr, http.StatusConflict, fmt.Errorf("%s held nothing of %s before release %s: there is nothing to roll it back to", env, im.Repository, name)
		}
		rr.Images = append(rr.Images, events.ReleaseImage{Repository: im.Repository, Digest: im.PreviousDigest})
	}
	return rr, 0, nil
}

// pinRelease pins the environment for every image of a release rollback.
func (r *reporter) pinRelease(ctx context.Context, rr events.ReleaseRequest, runID string) error {
	for _, im := range rr.Images {
		p := api.Pin{Environment: rr.To, Repository: im.Repository, Digest: im.Digest, Reason: rr.Rollback.Reason, By: rr.RequestedBy, At: time.Now().UTC(), RunID: runID}
		if err := r.store.pin(ctx, p); err != nil {
			return err
		}
	}
	return nil
}
