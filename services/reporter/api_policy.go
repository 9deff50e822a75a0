package reporter

import (
	"fmt"
	"net/http"
	"time"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/policy"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/pkg/tags"
)

// dryRun answers GET /v1/policy/{env}?ref=… (or repository=…&digest=…):
// every gate and every rule, as a promotion now would meet them.
func (r *reporter) dryRun(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	pr, err := api.PromoteRequest{Ref: q.Get("ref"), Repository: q.Get("repository"), Digest: q.Get("digest"), To: req.PathValue("env")}.Request()
	if err != nil {
		service.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	pr.RequestedBy = "dry-run"
	ctx := req.Context()
	now := time.Now().UTC()
	rep := api.PolicyReport{Environment: pr.To, Repository: pr.Repository, Digest: pr.Digest, Clauses: []policy.Clause{}}
	d, err := r.gates(ctx, pr, "", now, tags.Request{RunID: "dry-run", RequestedAt: now, Digest: pr.Digest})
	if err != nil {
		service.WriteError(w, http.StatusServiceUnavailable, "the gates could not be checked: "+err.Error())
		return
	}
	if rej := d.Rejection; rej != nil {
		rep.Gate, rep.Reason, rep.Hint = rej.Gate, rej.Reason, rej.Hint
	}
	if s := d.Supersession; s != nil {
		rep.Gate, rep.Reason = GateTagDrift, fmt.Sprintf("run %s, requested after now, moved tag %s to %s", s.By, s.Tag, s.ByDigest)
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
			var clauses []policy.Clause
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
