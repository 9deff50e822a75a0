package reporter

import (
	"fmt"
	"net/http"
	"time"

	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/service"
)

// ApproveRequest is the body of POST /v1/approvals: the digest (ref, or
// repository and digest) and the environment the approval is for.
type ApproveRequest = PromoteRequest

// PolicyReport is the answer to GET /v1/policy/{env}: what a promotion of
// the digest would meet now, without promoting it.
type PolicyReport struct {
	Environment string `json:"environment"`
	Repository  string `json:"repository"`
	Digest      string `json:"digest"`
	// Allowed is true when every built-in gate and every rule passes.
	Allowed bool `json:"allowed"`
	// Gate and Reason name what refuses it, when something does.
	Gate    string   `json:"gate,omitempty"`
	Reason  string   `json:"reason,omitempty"`
	Hint    string   `json:"hint,omitempty"`
	Clauses []Clause `json:"clauses"`
}

// approve records the caller's approval of a digest for an environment
// (POST /v1/approvals): policies can require approvals by name.
func (r *reporter) approve(w http.ResponseWriter, req *http.Request) {
	pr, ok := r.promotionBody(w, req)
	if !ok {
		return
	}
	rec, err := r.store.approve(req.Context(), ApprovalRecord{Environment: pr.To, Repository: pr.Repository, Digest: pr.Digest, By: pr.RequestedBy, At: time.Now().UTC()})
	if err != nil {
		service.WriteError(w, http.StatusServiceUnavailable, "the approval was not stored: "+err.Error())
		return
	}
	r.cfg.Log().Info(fmt.Sprintf("approved by %s: %s@%s for %s", rec.By, rec.Repository, rec.Digest, rec.Environment))
	service.WriteJSON(w, http.StatusCreated, rec)
}

// dryRun answers GET /v1/policy/{env}?ref=… (or repository=…&digest=…):
// every gate and every rule, as a promotion now would meet them.
func (r *reporter) dryRun(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	pr, err := PromoteRequest{Ref: q.Get("ref"), Repository: q.Get("repository"), Digest: q.Get("digest"), To: req.PathValue("env")}.request()
	if err != nil {
		service.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	pr.RequestedBy = "dry-run"
	ctx := req.Context()
	now := time.Now().UTC()
	rep := PolicyReport{Environment: pr.To, Repository: pr.Repository, Digest: pr.Digest, Clauses: []Clause{}}
	d, err := r.gates(ctx, pr, "", now)
	if err != nil {
		service.WriteError(w, http.StatusServiceUnavailable, "the gates could not be checked: "+err.Error())
		return
	}
	if rej := d.Rejection; rej != nil {
		rep.Gate, rep.Reason, rep.Hint = rej.Gate, rej.Reason, rej.Hint
	}
	rep.Allowed = d.Approval != nil
	// The rules, all of them, whichever gate refused first.
	if r.cfg.Policy.Has(pr.To) {
		var reg *registry.Repo
		source, err := r.sourceOf(ctx, pr)
		if err == nil {
			reg, err = r.Registry.Open(ctx, source, false)
		}
		if err == nil {
			var clauses []Clause
			if clauses, err = r.checkPolicy(ctx, reg, pr, now); err == nil {
				rep.Clauses = clauses
			}
		}
		if err != nil {
			e := failure.As(err)
			service.WriteError(w, http.StatusServiceUnavailable, "the evidence could not be read: "+e.Error()+" ("+e.Hint+")")
			return
		}
	}
	service.WriteJSON(w, http.StatusOK, rep)
}
