package reporter

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/service"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
)

// maxRequestBody bounds what a write endpoint reads.
const maxRequestBody = 64 << 10

// replayDeadLetter answers POST /v1/dlq/{seq}/replay for an authorized
// caller: the dead letter is published again, as it was.
func (r *reporter) replayDeadLetter(w http.ResponseWriter, req *http.Request) {
	if _, ok := r.authorize(w, req); !ok {
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
	service.WriteJSON(w, http.StatusAccepted, api.PromoteAccepted{RunID: runID, EventID: ev.ID()})
}

// promotionBody authorizes the caller and reads a {"ref", "to"} body (as
// POST /v1/promotions and POST /v1/approvals take it) into a request for an
// environment of the chain, by the token's name. When it returns false it
// has answered the request.
func (r *reporter) promotionBody(w http.ResponseWriter, req *http.Request) (events.PromotionRequest, bool) {
	who, ok := r.authorize(w, req)
	if !ok {
		return events.PromotionRequest{}, false
	}
	var body api.PromoteRequest
	if !decodeBody(w, req, &body, `{"ref": "registry/repo@sha256:…", "to": "staging"}`) {
		return events.PromotionRequest{}, false
	}
	pr, err := body.Request()
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

// decodeBody reads a write's JSON body into v, refusing unknown fields and
// bodies over maxRequestBody. When it returns false it has answered the
// request, showing example.
func decodeBody(w http.ResponseWriter, req *http.Request, v any, example string) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, req.Body, maxRequestBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		service.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is over %d bytes", maxRequestBody))
	case err != nil:
		service.WriteError(w, http.StatusBadRequest, "the body must be JSON: "+example+": "+err.Error())
	}
	return err == nil
}

// approve records the caller's approval of a digest for an environment
// (POST /v1/approvals): policies can require approvals by name.
func (r *reporter) approve(w http.ResponseWriter, req *http.Request) {
	pr, ok := r.promotionBody(w, req)
	if !ok {
		return
	}
	rec, err := r.store.approve(req.Context(), api.ApprovalRecord{Environment: pr.To, Repository: pr.Repository, Digest: pr.Digest, By: pr.RequestedBy, At: time.Now().UTC()})
	if err != nil {
		service.WriteError(w, http.StatusServiceUnavailable, "the approval was not stored: "+err.Error())
		return
	}
	r.cfg.Log().Info(fmt.Sprintf("approved by %s: %s@%s for %s", rec.By, rec.Repository, rec.Digest, rec.Environment))
	service.WriteJSON(w, http.StatusCreated, rec)
}
