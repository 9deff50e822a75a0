package reporter

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/runs"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/service"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
)

// maxRequestBody bounds what a write endpoint reads.
const maxRequestBody = 64 << 10

// routes is the reporter's HTTP API.
func (r *reporter) routes() http.Handler {
	mux := http.NewServeMux()
	health := r.cfg.Health
	if health == nil { // embedded without one: alive and connected is all it can say
		health = &service.Health{JS: r.cfg.JetStream, NC: r.cfg.JetStream.Conn()}
	}
	health.Register(mux)
	mux.HandleFunc("GET /v1/promotions", func(w http.ResponseWriter, req *http.Request) {
		q := req.URL.Query()
		recs, err := r.store.list(req.Context(), q.Get("env"), q.Get("repo"))
		if err != nil {
			service.WriteError(w, http.StatusServiceUnavailable, "read promotions: "+err.Error())
			return
		}
		service.WriteJSON(w, http.StatusOK, recs)
	})
	mux.HandleFunc("GET /v1/promotions/{env}/{repo...}", func(w http.ResponseWriter, req *http.Request) {
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
		hist, err := r.store.listHistory(req.Context(), env, repo)
		if err != nil {
			service.WriteError(w, http.StatusServiceUnavailable, "read history: "+err.Error())
			return
		}
		if !found && len(hist) == 0 {
			service.WriteError(w, http.StatusNotFound, fmt.Sprintf("%s has never been promoted to %s", repo, env))
			return
		}
		out := struct {
			Current *events.Promotion `json:"current"`
			History []HistoryEntry    `json:"history"`
		}{History: hist}
		if found {
			out.Current = &cur
		}
		service.WriteJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/history", func(w http.ResponseWriter, req *http.Request) {
		q := req.URL.Query()
		hist, err := r.store.listHistory(req.Context(), q.Get("env"), q.Get("repo"))
		if err != nil {
			service.WriteError(w, http.StatusServiceUnavailable, "read history: "+err.Error())
			return
		}
		service.WriteJSON(w, http.StatusOK, hist)
	})
	mux.HandleFunc("POST /v1/promotions", r.requestPromotion)
	mux.HandleFunc("POST /v1/approvals", r.approve)
	mux.HandleFunc("GET /v1/policy/{env}", r.dryRun)
	mux.HandleFunc("GET /{$}", r.servePage)
	mux.HandleFunc("GET /v1/runs", func(w http.ResponseWriter, req *http.Request) {
		limit, err := strconv.Atoi(cmp.Or(req.URL.Query().Get("limit"), "20"))
		if err != nil || limit < 1 || limit > 200 {
			service.WriteError(w, http.StatusBadRequest, "limit is a number from 1 to 200")
			return
		}
		recent, err := r.recentRuns(req.Context(), limit, 5000)
		if err != nil {
			service.WriteError(w, http.StatusServiceUnavailable, "read runs: "+err.Error())
			return
		}
		service.WriteJSON(w, http.StatusOK, recent)
	})
	mux.HandleFunc("GET /v1/dlq", func(w http.ResponseWriter, req *http.Request) {
		dls, err := bus.DeadLetters(req.Context(), r.cfg.JetStream, 1000)
		if err != nil {
			service.WriteError(w, http.StatusServiceUnavailable, "read the dead-letter stream: "+err.Error())
			return
		}
		service.WriteJSON(w, http.StatusOK, dls)
	})
	mux.HandleFunc("POST /v1/dlq/{seq}/replay", func(w http.ResponseWriter, req *http.Request) {
		if _, ok := r.authorize(req); !ok {
			unauthorized(w, len(r.cfg.Tokens) == 0)
			return
		}
		seq, err := strconv.ParseUint(req.PathValue("seq"), 10, 64)
		if err != nil {
			service.WriteError(w, http.StatusBadRequest, "the sequence is a number from GET /v1/dlq")
			return
		}
		dl, err := bus.Replay(req.Context(), r.cfg.JetStream, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			service.WriteError(w, http.StatusNotFound, err.Error())
			return
		}
		if err != nil {
			service.WriteError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		dl.Body = nil
		service.WriteJSON(w, http.StatusOK, dl)
	})
	mux.HandleFunc("GET /v1/runs/{runid}", func(w http.ResponseWriter, req *http.Request) {
		run := req.PathValue("runid")
		if err := events.CheckRunID(run); err != nil {
			service.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		evs, err := runs.Events(req.Context(), r.cfg.JetStream, run)
		if err != nil {
			service.WriteError(w, http.StatusServiceUnavailable, "read run: "+err.Error())
			return
		}
		if len(evs) == 0 {
			service.WriteError(w, http.StatusNotFound, "no events for run "+run)
			return
		}
		service.WriteJSON(w, http.StatusOK, evs)
	})
	return mux
}

// PromoteRequest is the body of POST /v1/promotions: promote
// repository@digest (or ref, "repository@sha256:…") to environment to.
type PromoteRequest struct {
	Ref        string `json:"ref,omitempty"`
	Repository string `json:"repository,omitempty"`
	Digest     string `json:"digest,omitempty"`
	To         string `json:"to"`
}

// PromoteAccepted is the answer to POST /v1/promotions: follow the run at
// GET /v1/runs/{runId}.
type PromoteAccepted struct {
	RunID   string `json:"runId"`
	EventID string `json:"eventId"`
}

// requestPromotion publishes promotion.requested for an authorized caller
// and answers 202 once the event is stored; the gates run in the reporter's
// consumer, and the run says how it ends.
func (r *reporter) requestPromotion(w http.ResponseWriter, req *http.Request) {
	pr, ok := r.promotionBody(w, req)
	if !ok {
		return
	}
	runID := uuid.NewString()
	ev, err := r.Bus.Start(req.Context(), events.PromotionRequested, runID, pr.Repository, pr)
	if err != nil {
		service.WriteError(w, http.StatusServiceUnavailable, "the bus did not take the request: "+err.Error())
		return
	}
	service.WriteJSON(w, http.StatusAccepted, PromoteAccepted{RunID: runID, EventID: ev.ID()})
}

// promotionBody authorizes the caller and reads a {"ref", "to"} body (as
// POST /v1/promotions and POST /v1/approvals take it) into a request for an
// environment of the chain, by the token's name. When it returns false it
// has answered the request.
func (r *reporter) promotionBody(w http.ResponseWriter, req *http.Request) (events.PromotionRequest, bool) {
	who, ok := r.authorize(req)
	if !ok {
		unauthorized(w, len(r.cfg.Tokens) == 0)
		return events.PromotionRequest{}, false
	}
	var body PromoteRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, req.Body, maxRequestBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			service.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is over %d bytes", maxRequestBody))
			return events.PromotionRequest{}, false
		}
		service.WriteError(w, http.StatusBadRequest, "the body must be JSON: {\"ref\": \"registry/repo@sha256:…\", \"to\": \"staging\"}: "+err.Error())
		return events.PromotionRequest{}, false
	}
	pr, err := body.request()
	if err != nil {
		service.WriteError(w, http.StatusBadRequest, err.Error())
		return events.PromotionRequest{}, false
	}
	if !slices.Contains(r.cfg.Environments, pr.To) {
		service.WriteError(w, http.StatusBadRequest, fmt.Sprintf("%q is not in the promotion chain %s", pr.To, strings.Join(r.cfg.Environments, " → ")))
		return events.PromotionRequest{}, false
	}
	pr.RequestedBy = who
	return pr, true
}

// request validates the body into a promotion.requested payload.
func (b PromoteRequest) request() (events.PromotionRequest, error) {
	repo, dgst := b.Repository, b.Digest
	if b.Ref != "" {
		d, err := name.NewDigest(b.Ref)
		if err != nil {
			return events.PromotionRequest{}, fmt.Errorf("ref %q: promote by digest, registry/repo@sha256:<hex>: %w", b.Ref, err)
		}
		repo, dgst = d.Context().Name(), d.DigestStr()
	}
	if _, err := name.NewDigest(repo + "@" + dgst); err != nil {
		return events.PromotionRequest{}, fmt.Errorf("give ref (registry/repo@sha256:<hex>) or repository and digest: %w", err)
	}
	if b.To == "" {
		return events.PromotionRequest{}, errors.New(`"to" names the environment to promote to`)
	}
	return events.PromotionRequest{Repository: repo, Digest: dgst, To: b.To}, nil
}

// authorize returns the name of the token the request bears. Every token
// is compared, in constant time over equal-length hashes, so neither the
// answer's timing nor the token's length gives a token away.
func (r *reporter) authorize(req *http.Request) (string, bool) {
	given, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	if !ok || given == "" {
		return "", false
	}
	who, found := "", false
	for name, token := range r.cfg.Tokens { // every token is compared, whichever matches
		if service.SameSecret(given, token) {
			who, found = name, true
		}
	}
	return who, found
}

// unauthorized answers a write without a valid token.
func unauthorized(w http.ResponseWriter, noTokens bool) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="digestline"`)
	msg := "a bearer token is required: set DIGESTLINE_API_TOKEN"
	if noTokens {
		msg = "this reporter accepts no writes: start it with DIGESTLINE_API_TOKEN set"
	}
	service.WriteError(w, http.StatusUnauthorized, msg)
}
