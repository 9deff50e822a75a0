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
	// Named after the rollback's run: an automatic rollback pins once,
	// however often its cause is delivered.
	return s.addHistory(ctx, p.Environment, p.Repository, api.HistoryEntry{Kind: "pinned", At: p.At, Pin: &p, RunID: p.RunID, EventID: "pin-" + p.RunID})
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
	return allJSON[api.Pin](ctx, s.controls, "pin.>")
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
	if body.Release != "" {
		r.rollBackRelease(w, req, body, who)
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

// rollBackRelease answers POST /v1/rollbacks for a release: it pins the
// environment for each of its images, and publishes the release request
// that moves them all back.
func (r *reporter) rollBackRelease(w http.ResponseWriter, req *http.Request, body api.RollbackRequest, who string) {
	if err := checkRollback(r.cfg.Environments, body); err != nil {
		service.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	rr, status, err := r.rollbackRelease(req.Context(), body.Environment, body.Release, strings.TrimSpace(body.Reason))
	if err != nil {
		service.WriteError(w, status, err.Error())
		return
	}
	rr.RequestedBy = who
	runID := uuid.NewString()
	if err := r.pinRelease(req.Context(), rr, runID); err != nil {
		service.WriteError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	r.startRelease(w, req, rr, runID)
}

// checkRollback checks what every rollback names: an environment of the
// chain, a reason, and a repository or a release (not both).
func checkRollback(chain []string, body api.RollbackRequest) error {
	switch {
	case !slices.Contains(chain, body.Environment):
		return fmt.Errorf("environment %q is not in the promotion chain %s", body.Environment, strings.Join(chain, " → "))
	case strings.TrimSpace(body.Reason) == "":
		return errors.New(`"reason" says why (the history and the pin keep it)`)
	case (body.Repository == "") == (body.Release == ""):
		return errors.New(`name a "repository" or a "release" to roll back`)
	case body.Release != "" && body.To != "":
		return errors.New(`a release goes back to where it found each image: "to" is for one repository`)
	}
	return nil
}

// rollbackTo is the promotion request a rollback asks for: back to the
// digest the environment held before its current one, or to the one the
// body names, which it must have held. A request that cannot be one says
// why, with its status.
func (r *reporter) rollbackTo(ctx context.Context, body api.RollbackRequest) (events.PromotionRequest, int, error) {
	env, reason := body.Environment, strings.TrimSpace(body.Reason)
	if err := checkRollback(r.cfg.Environments, body); err != nil {
		return events.PromotionRequest{}, http.StatusBadRequest, err
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

// Freezes. An environment is frozen by someone (POST /v1/freezes, until a
// time) or by a window of the policy (weekends, a holiday, nights, in a
// time zone): every promotion into it is refused at the freeze gate,
// naming the freeze, why, and when it ends, unless an API token the
// policy names for emergencies approved the digest for it (digestline
// approve); the record and the history then say it was an emergency, and
// whose approval let it through. A freeze someone set is in the controls
// bucket under freeze.<env>, until it ends or is lifted.

// GateFreeze refuses a promotion into a frozen environment.
const GateFreeze = "freeze"

func freezeKey(env string) string { return "freeze." + envToken(env) }

// freezeOf returns the freeze someone set on env that covers at, if one
// does.
func (s *store) freezeOf(ctx context.Context, env string, at time.Time) (api.Freeze, bool, error) {
	var f api.Freeze
	_, found, err := getJSON(ctx, s.controls, freezeKey(env), &f)
	return f, found && at.Before(f.Until), err
}

// freeze sets f (replacing a freeze set before), and says so in the
// history, under the id of the event that announces it.
func (s *store) freeze(ctx context.Context, f api.Freeze, eventID string) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	if _, err := s.controls.Put(ctx, freezeKey(f.Environment), b); err != nil {
		return fmt.Errorf("freeze %s: %w", f.Environment, err)
	}
	return s.addHistory(ctx, f.Environment, "", api.HistoryEntry{Kind: "frozen", At: f.At, Freeze: &f, EventID: eventID})
}

// unfreeze lifts the freeze someone set on env, as by asked, and says so
// in the history, under the id of the event that announces it; found is
// false when none is in force.
func (s *store) unfreeze(ctx context.Context, env, by, eventID string) (api.Freeze, bool, error) {
	var f api.Freeze
	rev, found, err := getJSON(ctx, s.controls, freezeKey(env), &f)
	now := time.Now().UTC()
	if err != nil || !found || !now.Before(f.Until) {
		return f, false, err
	}
	if err := s.controls.Delete(ctx, freezeKey(env), jetstream.LastRevision(rev)); err != nil {
		return f, true, fmt.Errorf("unfreeze %s: %w (frozen again meanwhile? read GET /v1/freezes)", env, err)
	}
	lifted := f
	lifted.By, lifted.At = by, now
	return f, true, s.addHistory(ctx, env, "", api.HistoryEntry{Kind: "unfrozen", At: now, Freeze: &lifted, EventID: eventID})
}

// frozen returns the freeze that covers env at t: one someone set, else a
// window of the policy.
func (r *reporter) frozen(ctx context.Context, env string, at time.Time) (*api.Freeze, error) {
	f, found, err := r.store.freezeOf(ctx, env, at)
	if err != nil || found {
		return &f, err
	}
	if w, ends, ok := r.cfg.Policy.Frozen(env, at); ok {
		return &api.Freeze{Environment: env, Name: w.Name, Until: ends, Reason: w.Reason, By: "policy"}, nil
	}
	return nil, nil
}

// freezeGate refuses a promotion into an environment frozen at at, unless
// one of the policy's emergency approvers approved its digest for it: it
// then returns what the record says of that.
func (r *reporter) freezeGate(ctx context.Context, req events.PromotionRequest, at time.Time) (emergency string, err error) {
	f, err := r.frozen(ctx, req.To, at)
	if err != nil || f == nil {
		return "", err
	}
	what := "by " + f.By
	if f.Name != "" {
		what = "by freeze window " + f.Name
	}
	approvers := r.cfg.Policy.Emergency(req.To)
	if len(approvers) > 0 {
		approvals, err := r.store.approvals(ctx, req.To, req.Repository, req.Digest)
		if err != nil {
			return "", err
		}
		for _, a := range approvals {
			if slices.Contains(approvers, a.By) {
				return fmt.Sprintf("through the freeze %s (%s), approved by %s", what, f.Reason, a.By), nil
			}
		}
	}
	hint := "wait until it ends"
	if len(approvers) > 0 {
		hint += fmt.Sprintf(", or, for an emergency, have %s run: digestline approve %s@%s --to %s", strings.Join(approvers, " or "), req.Repository, req.Digest, req.To)
	} else {
		hint += fmt.Sprintf(" (the policy names no emergency approvers for %s)", req.To)
	}
	return "", refuse(GateFreeze, hint, "%s is frozen until %s %s: %s", req.To, f.Until.Format(time.RFC3339), what, f.Reason)
}

// requestFreeze answers POST /v1/freezes for an authorized caller.
func (r *reporter) requestFreeze(w http.ResponseWriter, req *http.Request) {
	who, ok := r.authorize(w, req)
	if !ok {
		return
	}
	var body api.FreezeRequest
	if !decodeBody(w, req, &body, `{"environment": "prod", "until": "2026-12-28T09:00:00+01:00", "reason": "why"}`) {
		return
	}
	now := time.Now().UTC()
	switch {
	case !slices.Contains(r.cfg.Environments, body.Environment):
		service.WriteError(w, http.StatusBadRequest, fmt.Sprintf("environment %q is not in the promotion chain %s", body.Environment, strings.Join(r.cfg.Environments, " → ")))
	case !body.Until.After(now):
		service.WriteError(w, http.StatusBadRequest, fmt.Sprintf(`"until" (%s) is not in the future`, body.Until.Format(time.RFC3339)))
	case strings.TrimSpace(body.Reason) == "":
		service.WriteError(w, http.StatusBadRequest, `"reason" says why (a refused promotion names it)`)
	default:
		f := api.Freeze{Environment: body.Environment, Until: body.Until.UTC(), Reason: strings.TrimSpace(body.Reason), By: who, At: now}
		runID := uuid.NewString()
		if err := r.store.freeze(req.Context(), f, runID); err != nil {
			service.WriteError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		if err := r.announceFreeze(req.Context(), events.EnvironmentFrozen, runID, freezeNotice(f)); err != nil {
			service.WriteError(w, http.StatusServiceUnavailable, fmt.Sprintf("%s is frozen, but the bus did not take the news (freeze again to announce it): %v", f.Environment, err))
			return
		}
		r.cfg.Log().Info(fmt.Sprintf("frozen %s until %s by %s: %s", f.Environment, f.Until.Format(time.RFC3339), who, f.Reason))
		service.WriteJSON(w, http.StatusCreated, f)
	}
}

// listFreezes answers GET /v1/freezes: the freeze in force now in each
// environment that has one, someone's or the policy's.
func (r *reporter) listFreezes(w http.ResponseWriter, req *http.Request) {
	out := []api.Freeze{}
	for _, env := range r.cfg.Environments {
		f, err := r.frozen(req.Context(), env, time.Now())
		if err != nil {
			service.WriteError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		if f != nil {
			out = append(out, *f)
		}
	}
	service.WriteJSON(w, http.StatusOK, out)
}

// unfreezeEnv answers DELETE /v1/freezes/{env} for an authorized caller:
// it lifts the freeze someone set (a policy's window is lifted in the
// policy file).
func (r *reporter) unfreezeEnv(w http.ResponseWriter, req *http.Request) {
	who, ok := r.authorize(w, req)
	if !ok {
		return
	}
	env := req.PathValue("env")
	runID := uuid.NewString()
	f, found, err := r.store.unfreeze(req.Context(), env, who, runID)
	switch {
	case err != nil:
		service.WriteError(w, http.StatusServiceUnavailable, err.Error())
	case !found:
		service.WriteError(w, http.StatusNotFound, fmt.Sprintf("no one froze %s (a freeze window of the policy is lifted in the policy file; GET /v1/freezes lists them)", env))
	default:
		r.cfg.Log().Info(fmt.Sprintf("unfrozen %s by %s", env, who))
		lifted := freezeNotice(f)
		lifted.By, lifted.At = who, time.Now().UTC()
		if err := r.announceFreeze(req.Context(), events.EnvironmentUnfrozen, runID, lifted); err != nil {
			service.WriteError(w, http.StatusServiceUnavailable, fmt.Sprintf("%s is unfrozen, but the bus did not take the news: %v", env, err))
			return
		}
		service.WriteJSON(w, http.StatusOK, f)
	}
}

// freezeNotice is what environment.frozen says of f.
func freezeNotice(f api.Freeze) events.FreezeNotice {
	return events.FreezeNotice{Environment: f.Environment, Until: f.Until, Reason: f.Reason, By: f.By, Window: f.Name, At: f.At}
}

// announceFreeze publishes a freeze's event n, in a run of its own whose id
// is also the event's (a history entry names it).
func (r *reporter) announceFreeze(ctx context.Context, n events.Name, id string, f events.FreezeNotice) error {
	ev, err := events.NewEvent(r.Bus.Source(), n, id, f.Environment, f)
	if err != nil {
		return err
	}
	ev.SetID(id)
	return r.Bus.Publish(ctx, ev)
}

// announceWindows announces each freeze window of the policy as it begins
// and ends (environment.frozen and .unfrozen), looking every interval
// until ctx ends. Every replica looks; the events' ids are derived from
// the environment, the window and when it ends, so the bus stores each
// once (and the notifier sends it once). A window that ended while no
// reporter ran is not announced as ended.
func (r *reporter) announceWindows(ctx context.Context, interval time.Duration) error {
	held := map[string]events.FreezeNotice{} // by environment: the window in force when last looked
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		now := time.Now().UTC()
		for _, env := range r.cfg.Environments {
			var cur *events.FreezeNotice
			if w, ends, ok := r.cfg.Policy.Frozen(env, now); ok {
				cur = &events.FreezeNotice{Environment: env, Until: ends, Reason: w.Reason, By: "policy", Window: w.Name}
			}
			prev, had := held[env]
			n, f := events.Name(""), events.FreezeNotice{}
			switch {
			case cur != nil && (!had || !prev.Until.Equal(cur.Until)): // windows that follow each other are one freeze
				n, f = events.EnvironmentFrozen, *cur
			case cur == nil && had:
				n, f = events.EnvironmentUnfrozen, prev
			}
			if n == "" {
				continue
			}
			id := uuid.NewSHA1(uuid.NameSpaceURL, []byte(fmt.Sprintf("digestline:%s/%s/%s/%s", n, env, f.Window, f.Until.Format(time.RFC3339)))).String()
			if err := r.announceFreeze(ctx, n, id, f); err != nil {
				r.cfg.Log().Warn(fmt.Sprintf("announce %s of %s by window %s (tried again in %s): %v", n, env, f.Window, interval, err))
				continue
			}
			if cur != nil {
				held[env] = *cur
			} else {
				delete(held, env)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
