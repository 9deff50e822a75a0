package reporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/digestline/digestline/pkg/service"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
)

// Rollbacks and pins. A rollback is a promotion request back to a digest
// the environment held before (POST /v1/rollbacks): the gates check it as
// any promotion (its signatures, the policy), and the record and the
// promoted event say it is one. It pins the environment for the
// repository first: every promotion into it but another rollback is then
// refused at the pinned gate until someone unpins it (DELETE /v1/pins), so
// that no automation undoes the rollback, not even one that raced it.
// Pins are in the controls bucket under pin.<env>.<repo>; pinning and
// unpinning are in the history.

// GatePinned refuses a promotion into an environment pinned for its
// repository.
const GatePinned = "pinned"

func pinKey(env, repo string) string { return "pin." + envToken(env) + "." + repoToken(repo) }

// pinOf returns the environment's pin for repo, if it has one.
func (s *store) pinOf(ctx context.Context, env, repo string) (api.Pin, bool, error) {
	var p api.Pin
	_, found, err := getJSON(ctx, s.controls, pinKey(env, repo), &p)
	return p, found, err
}

// pin holds p.Environment at p.Digest for p.Repository (a newer pin
// replaces an older one), and says so in the history.
func (s *store) pin(ctx context.Context, p api.Pin) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if _, err := s.controls.Put(ctx, pinKey(p.Environment, p.Repository), b); err != nil {
		return fmt.Errorf("pin %s: %w", p.Environment, err)
	}
	return s.addHistory(ctx, p.Environment, p.Repository, api.HistoryEntry{Kind: "pinned", At: p.At, Pin: &p, RunID: p.RunID, EventID: uuid.NewString()})
}

// unpin lifts the environment's pin for repo, as by asked, and says so in
// the history; found is false when there was none.
func (s *store) unpin(ctx context.Context, env, repo, by string) (p api.Pin, found bool, err error) {
	rev, found, err := getJSON(ctx, s.controls, pinKey(env, repo), &p)
	if err != nil || !found {
		return p, found, err
	}
	if err := s.controls.Delete(ctx, pinKey(env, repo), jetstream.LastRevision(rev)); err != nil {
		return p, true, fmt.Errorf("unpin %s: %w (pinned again meanwhile? read GET /v1/pins)", env, err)
	}
	lifted := p // in the history: who lifted it, and when
	lifted.By, lifted.At = by, time.Now().UTC()
	return p, true, s.addHistory(ctx, env, repo, api.HistoryEntry{Kind: "unpinned", At: lifted.At, Pin: &lifted, RunID: p.RunID, EventID: uuid.NewString()})
}

// pins lists every pin: a few, one per rollback not yet lifted.
func (s *store) pins(ctx context.Context) ([]api.Pin, error) {
	lister, err := s.controls.ListKeysFiltered(ctx, "pin.>")
	if err != nil {
		return nil, fmt.Errorf("list pins: %w", err)
	}
	out := []api.Pin{}
	for key := range lister.Keys() {
		var p api.Pin
		if _, found, err := getJSON(ctx, s.controls, key, &p); err != nil {
			return nil, err
		} else if found {
			out = append(out, p)
		}
	}
	return out, nil
}

// pinGate refuses a promotion into an environment pinned for its
// repository, unless it is a rollback.
func (r *reporter) pinGate(ctx context.Context, req events.PromotionRequest) error {
	if req.Rollback != nil {
		return nil
	}
	p, found, err := r.store.pinOf(ctx, req.To, req.Repository)
	if err != nil || !found {
		return err
	}
	return refuse(GatePinned, fmt.Sprintf("once what the rollback was for is fixed: digestline unpin %s %s", req.To, req.Repository),
		"%s is pinned at %s for %s since %s by %s, for a rollback: %s", req.To, runs.ShortDigest(p.Digest), req.Repository, p.At.Format(time.RFC3339), p.By, p.Reason)
}

// requestRollback answers POST /v1/rollbacks for an authorized caller: it
// pins the environment at the digest it goes back to, and publishes the
// promotion request that moves it there (202, the run to follow).
func (r *reporter) requestRollback(w http.ResponseWriter, req *http.Request) {
	who, ok := r.authorize(w, req)
	if !ok {
		return
	}
	var body api.RollbackRequest
	if !decodeBody(w, req, &body, `{"environment": "prod", "repository": "registry/repo", "reason": "why", "to": "sha256:… (optional)"}`) {
		return
	}
	pr, status, err := r.rollbackTo(req.Context(), body)
	if err != nil {
		service.WriteError(w, status, err.Error())
		return
	}
	pr.RequestedBy = who
	runID := uuid.NewString()
	p := api.Pin{Environment: pr.To, Repository: pr.Repository, Digest: pr.Digest, Reason: body.Reason, By: who, At: time.Now().UTC(), RunID: runID}
	if err := r.store.pin(req.Context(), p); err != nil {
		service.WriteError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	ev, err := r.Bus.Start(req.Context(), events.PromotionRequested, runID, pr.Repository, pr)
	if err != nil {
		service.WriteError(w, http.StatusServiceUnavailable, "the bus did not take the rollback (the environment is pinned: retry, or unpin it): "+err.Error())
		return
	}
	r.cfg.Log().Info(fmt.Sprintf("rollback of %s for %s to %s asked by %s: %s", pr.To, pr.Repository, pr.Digest, who, body.Reason), "run_id", runID)
	service.WriteJSON(w, http.StatusAccepted, api.PromoteAccepted{RunID: runID, EventID: ev.ID()})
}

// rollbackTo is the promotion request a rollback asks for: back to the
// digest the environment held before its current one, or to the one the
// body names, which it must have held. A request that cannot be one says
// why, with its status.
func (r *reporter) rollbackTo(ctx context.Context, body api.RollbackRequest) (events.PromotionRequest, int, error) {
	env, reason := body.Environment, strings.TrimSpace(body.Reason)
	switch {
	case !slices.Contains(r.cfg.Environments, env):
		return events.PromotionRequest{}, http.StatusBadRequest, fmt.Errorf("environment %q is not in the promotion chain %s", env, strings.Join(r.cfg.Environments, " → "))
	case reason == "":
		return events.PromotionRequest{}, http.StatusBadRequest, errors.New(`"reason" says why (the history and the pin keep it)`)
	}
	repo, err := name.NewRepository(body.Repository)
	if err != nil {
		return events.PromotionRequest{}, http.StatusBadRequest, fmt.Errorf("repository %q: %w", body.Repository, err)
	}
	cur, found, err := r.store.current(ctx, env, repo.Name())
	if err != nil {
		return events.PromotionRequest{}, http.StatusServiceUnavailable, err
	}
	if !found {
		return events.PromotionRequest{}, http.StatusConflict, fmt.Errorf("%s holds nothing of %s: there is nothing to roll back", env, repo.Name())
	}
	to := body.To
	if to == "" {
		if to = cur.PreviousDigest; to == "" {
			return events.PromotionRequest{}, http.StatusConflict, fmt.Errorf("%s has held only %s of %s: name a digest it held with \"to\"", env, cur.Digest, repo.Name())
		}
	}
	if _, err := name.NewDigest(repo.Name() + "@" + to); err != nil {
		return events.PromotionRequest{}, http.StatusBadRequest, fmt.Errorf("to %q: a digest, sha256:<hex>: %w", to, err)
	}
	if to == cur.Digest {
		return events.PromotionRequest{}, http.StatusConflict, fmt.Errorf("%s holds %s already", env, to)
	}
	v, verified, err := r.store.verifiedDigest(ctx, repo.Name(), to)
	if err != nil {
		return events.PromotionRequest{}, http.StatusServiceUnavailable, err
	}
	if !verified || !slices.Contains(v.PromotedTo, env) {
		return events.PromotionRequest{}, http.StatusConflict, fmt.Errorf("%s never held %s of %s: a rollback goes back to a digest it held (digestline records --history --env %s)", env, to, repo.Name(), env)
	}
	return events.PromotionRequest{Repository: repo.Name(), Digest: to, To: env, Rollback: &events.Rollback{Reason: reason, From: cur.Digest}}, 0, nil
}

// listPins answers GET /v1/pins: every environment pinned, for which
// repository, at which digest, why and by whom.
func (r *reporter) listPins(w http.ResponseWriter, req *http.Request) {
	pins, err := r.store.pins(req.Context())
	if err != nil {
		service.WriteError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	service.WriteJSON(w, http.StatusOK, pins)
}

// unpinEnv answers DELETE /v1/pins/{env}/{repo...} for an authorized
// caller: promotions into the environment go through the gates again.
func (r *reporter) unpinEnv(w http.ResponseWriter, req *http.Request) {
	who, ok := r.authorize(w, req)
	if !ok {
		return
	}
	env, repo := req.PathValue("env"), req.PathValue("repo")
	p, found, err := r.store.unpin(req.Context(), env, repo, who)
	switch {
	case err != nil:
		service.WriteError(w, http.StatusServiceUnavailable, err.Error())
	case !found:
		service.WriteError(w, http.StatusNotFound, fmt.Sprintf("%s is not pinned for %s (GET /v1/pins lists the pins)", env, repo))
	default:
		r.cfg.Log().Info(fmt.Sprintf("unpinned %s for %s by %s", env, repo, who))
		service.WriteJSON(w, http.StatusOK, p)
	}
}
