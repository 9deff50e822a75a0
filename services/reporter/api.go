package reporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/digestline/digestline/pkg/service"
)

// routes is the reporter's HTTP API: one handler method per route.
func (r *reporter) routes() http.Handler {
	mux := http.NewServeMux()
	health := r.cfg.Health
	if health == nil { // embedded without one: alive and connected is all it can say
		health = &service.Health{JS: r.cfg.JetStream, NC: r.cfg.JetStream.Conn()}
	}
	health.Register(mux)
	mux.HandleFunc("GET /{$}", r.servePage)
	mux.HandleFunc("GET /runs", r.serveRuns)
	mux.HandleFunc("GET /runs/{runid}", r.serveRun)
	mux.HandleFunc("GET /envs/{env}", r.serveEnv)
	mux.HandleFunc("GET /digests/{digest}", r.serveDigest)
	mux.HandleFunc("GET /v1/digests/{digest}", r.getDigest)
	mux.HandleFunc("GET /v1/promotions", r.listPromotions)
	mux.HandleFunc("GET /v1/promotions/{env}/{repo...}", r.getPromotion)
	mux.HandleFunc("POST /v1/promotions", r.requestPromotion)
	mux.HandleFunc("GET /v1/history", r.listHistory)
	mux.HandleFunc("POST /v1/approvals", r.approve)
	mux.HandleFunc("POST /v1/rollbacks", r.requestRollback)
	mux.HandleFunc("POST /v1/releases", r.requestRelease)
	mux.HandleFunc("POST /v1/admissions", r.requestAdmission)
	mux.HandleFunc("GET /v1/releases/{env}/{name}", r.getRelease)
	mux.HandleFunc("POST /v1/gc", r.requestGC)
	mux.HandleFunc("GET /v1/gc/{repo...}", r.lastGC)
	mux.HandleFunc("GET /v1/pins", r.listPins)
	mux.HandleFunc("DELETE /v1/pins/{env}/{repo...}", r.unpinEnv)
	mux.HandleFunc("POST /v1/freezes", r.requestFreeze)
	mux.HandleFunc("GET /v1/freezes", r.listFreezes)
	mux.HandleFunc("DELETE /v1/freezes/{env}", r.unfreezeEnv)
	mux.HandleFunc("GET /v1/policy/{env}", r.dryRun)
	mux.HandleFunc("GET /v1/runs", r.listRuns)
	mux.HandleFunc("GET /v1/runs/{runid}", r.getRun)
	mux.HandleFunc("GET /v1/runs/{runid}/summary", r.getRunSummary)
	mux.HandleFunc("GET /v1/pushes/{commit}", r.getPush)
	mux.HandleFunc("GET /v1/dlq", r.listDeadLetters)
	mux.HandleFunc("POST /v1/dlq/{seq}/replay", r.replayDeadLetter)
	return service.JSONErrors("/v1/", mux)
}

// listPromotions answers GET /v1/promotions?env=&repo=&cursor=&limit=:
// the current record per environment and repository, by environment then
// repository, a page at a time.
func (r *reporter) listPromotions(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	lq, err := api.ParseListQuery(q)
	if err == nil && (!lq.Since.IsZero() || !lq.Until.IsZero()) {
		err = errors.New("the current records page by cursor and limit; their history takes since and until (GET /v1/history)")
	}
	if err != nil {
		service.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	recs, next, err := r.store.list(req.Context(), q.Get("env"), q.Get("repo"), lq.Cursor, lq.Limit)
	if err != nil {
		err = fmt.Errorf("read promotions: %w", err)
	}
	writePage(w, api.Page[events.Promotion]{Items: recs, Next: next}, err)
}

// writePage answers a list request with its page, or with why there is
// none: the query's mistake (400) or the store's failure (503).
func writePage(w http.ResponseWriter, page any, err error) {
	switch {
	case errors.Is(err, errBadQuery):
		service.WriteError(w, http.StatusBadRequest, err.Error())
	case err != nil:
		service.WriteError(w, http.StatusServiceUnavailable, err.Error())
	default:
		service.WriteJSON(w, http.StatusOK, page)
	}
}

// writeRecord answers a request for one record with it, with missing
// (404) when there is none, or with the store's failure (503).
func writeRecord(w http.ResponseWriter, rec any, found bool, err error, missing string) {
	switch {
	case err != nil:
		service.WriteError(w, http.StatusServiceUnavailable, err.Error())
	case !found:
		service.WriteError(w, http.StatusNotFound, missing)
	default:
		service.WriteJSON(w, http.StatusOK, rec)
	}
}

// getPromotion answers GET /v1/promotions/{env}/{repo}: one record and its
// history.
func (r *reporter) getPromotion(w http.ResponseWriter, req *http.Request) {
	env, repo := req.PathValue("env"), req.PathValue("repo")
	if !slices.Contains(r.cfg.Environments, env) {
		service.WriteError(w, http.StatusNotFound, fmt.Sprintf("%q is not in the promotion chain %s", env, strings.Join(r.cfg.Environments, " → ")))
		return
	}
	cur, found, err := r.store.current(req.Context(), env, repo)
	if err != nil {
		service.WriteError(w, http.StatusServiceUnavailable, "read promotion: "+err.Error())
		return
	}
	hist, err := r.store.historyPage(req.Context(), api.HistoryQuery{ListQuery: api.ListQuery{Limit: api.DefaultLimit}, Env: env, Repo: repo})
	if err != nil {
		service.WriteError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if !found && len(hist.Items) == 0 {
		service.WriteError(w, http.StatusNotFound, fmt.Sprintf("%s has never been promoted to %s", repo, env))
		return
	}
	out := api.PromotionRecord{History: hist.Items, Next: hist.Next}
	if found {
		out.Current = &cur
	}
	service.WriteJSON(w, http.StatusOK, out)
}

// listHistory answers GET /v1/history (api.HistoryQuery: env, repo,
// digest, kind, since, until, cursor, limit): promotions and rejections,
// newest first, a page at a time.
func (r *reporter) listHistory(w http.ResponseWriter, req *http.Request) {
	q, err := api.ParseHistoryQuery(req.URL.Query())
	if err != nil {
		service.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	page, err := r.store.historyPage(req.Context(), q)
	writePage(w, page, err)
}

// listRuns answers GET /v1/runs (api.RunQuery: status, digest, repo,
// since, until, cursor, limit): runs, newest first, a page at a time.
func (r *reporter) listRuns(w http.ResponseWriter, req *http.Request) {
	q, err := api.ParseRunQuery(req.URL.Query())
	if err != nil {
		service.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	page, err := r.runs.page(req.Context(), q)
	writePage(w, page, err)
}

// getRunSummary answers GET /v1/runs/{runid}/summary: the run as
// GET /v1/runs lists it; a run past the events' retention keeps it. The
// id may be cut to any prefix only one run's id has.
func (r *reporter) getRunSummary(w http.ResponseWriter, req *http.Request) {
	id := req.PathValue("runid")
	if err := events.CheckRunID(id); err != nil {
		service.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	run, err := r.runs.summary(req.Context(), id)
	if errors.Is(err, runs.ErrNoRun) {
		var status int
		if id, status, err = r.resolveRun(req.Context(), id); err != nil {
			service.WriteError(w, status, err.Error())
			return
		}
		run, err = r.runs.summary(req.Context(), id)
	}
	if errors.Is(err, runs.ErrNoRun) {
		service.WriteError(w, http.StatusNotFound, err.Error())
		return
	}
	if err != nil {
		service.WriteError(w, http.StatusServiceUnavailable, "read run: "+err.Error())
		return
	}
	r.noteWaiting(req.Context(), run)
	w.Header().Set("Content-Location", "/v1/runs/"+id+"/summary")
	service.WriteJSON(w, http.StatusOK, run)
}

// getRun answers GET /v1/runs/{runid}: the run's CloudEvents, in stream
// order. The id may be cut to any prefix only one run's id has.
func (r *reporter) getRun(w http.ResponseWriter, req *http.Request) {
	id, evs, status, err := r.runEvents(req.Context(), req.PathValue("runid"))
	if err != nil {
		service.WriteError(w, status, err.Error())
		return
	}
	w.Header().Set("Content-Location", "/v1/runs/"+id)
	service.WriteJSON(w, http.StatusOK, evs)
}

// runEvents reads the events of the run id names: the run of that id,
// else the one whose id it starts. When there is none it says why, with
// the status that says so, and the whole id when it found the run but
// none of its events (past the stream's retention).
func (r *reporter) runEvents(ctx context.Context, id string) (string, []json.RawMessage, int, error) {
	if err := events.CheckRunID(id); err != nil {
		return "", nil, http.StatusBadRequest, err
	}
	evs, err := runs.Events(ctx, r.cfg.JetStream, id)
	if err == nil && len(evs) == 0 {
		var status int
		if id, status, err = r.resolveRun(ctx, id); err != nil {
			return "", nil, status, err
		}
		evs, err = runs.Events(ctx, r.cfg.JetStream, id)
	}
	if err != nil {
		return "", nil, http.StatusServiceUnavailable, fmt.Errorf("read run: %w", err)
	}
	if len(evs) == 0 {
		return id, nil, http.StatusNotFound, fmt.Errorf("%w: no events for run %s", runs.ErrNoRun, id)
	}
	return id, evs, http.StatusOK, nil
}

// resolveRun is the whole id of the run id names (runIndexer.resolve), or
// why there is none, with the status that says so.
func (r *reporter) resolveRun(ctx context.Context, id string) (string, int, error) {
	full, err := r.runs.resolve(ctx, id)
	switch {
	case errors.Is(err, errBadQuery):
		return "", http.StatusBadRequest, err
	case errors.Is(err, runs.ErrNoRun):
		return "", http.StatusNotFound, err
	case errors.Is(err, runs.ErrAmbiguous):
		return "", http.StatusConflict, err
	case err != nil:
		return "", http.StatusServiceUnavailable, err
	}
	return full, http.StatusOK, nil
}

// listDeadLetters answers GET /v1/dlq?cursor=&limit=: the dead letters,
// newest first, a page at a time.
func (r *reporter) listDeadLetters(w http.ResponseWriter, req *http.Request) {
	q, err := api.ParseListQuery(req.URL.Query())
	if err == nil && (!q.Since.IsZero() || !q.Until.IsZero()) {
		err = errors.New("the dead letters page by cursor and limit only")
	}
	var before uint64
	if err == nil {
		before, err = decodeCursor(q.Cursor)
	}
	if err != nil {
		service.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	dls, next, err := bus.DeadLetterPage(req.Context(), r.cfg.JetStream, before, q.Limit)
	if err != nil {
		service.WriteError(w, http.StatusServiceUnavailable, "read the dead-letter stream: "+err.Error())
		return
	}
	service.WriteJSON(w, http.StatusOK, api.Page[bus.DeadLetter]{Items: dls, Next: encodeCursor(next)})
}
