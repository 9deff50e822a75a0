package reporter

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/google/uuid"
)

// requestAdmission answers POST /v1/admissions for an authorized caller
// (digestline admit): it publishes admission.requested for an image
// another tool pushed, and answers 202 with the run to follow. The
// verifier proves it; it then promotes as a build's run does.
func (r *reporter) requestAdmission(w http.ResponseWriter, req *http.Request) {
	who, ok := r.authorize(w, req)
	if !ok {
		return
	}
	var body api.AdmitRequest
	if !decodeBody(w, req, &body, `{"ref": "registry/repo@sha256:…", "to": "dev", "keys": ["-----BEGIN PUBLIC KEY-----…"]}`) {
		return
	}
	ar, err := body.Request()
	if err == nil && ar.PromoteTo != "" && !slices.Contains(r.cfg.Environments, ar.PromoteTo) {
		err = fmt.Errorf("%q is not in the promotion chain %s", ar.PromoteTo, strings.Join(r.cfg.Environments, " → "))
	}
	for i, k := range ar.Trust.Keys {
		if _, kerr := sign.ParseVerifier([]byte(k)); kerr != nil && err == nil {
			err = fmt.Errorf("keys[%d]: %w", i, kerr)
		}
	}
	if err != nil {
		service.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	ar.RequestedBy = who
	runID := uuid.NewString()
	ev, err := r.Bus.Start(req.Context(), events.AdmissionRequested, runID, ar.Target, ar)
	if err != nil {
		service.WriteError(w, http.StatusServiceUnavailable, "the bus did not take the admission: "+err.Error())
		return
	}
	r.cfg.Log().Info(fmt.Sprintf("admission of %s@%s asked by %s", ar.Target, ar.Digest, who), "run_id", runID)
	service.WriteJSON(w, http.StatusAccepted, api.PromoteAccepted{RunID: runID, EventID: ev.ID()})
}

// evidenceKeys are the keys whose signatures and attestations count as
// evidence about repository@digest in env: the environment's keys (the
// reporter's own when its policy names none), and, for an image admitted
// from another tool, the keys its admission trusted.
func (r *reporter) evidenceKeys(ctx context.Context, env, repository, dgst string) ([]sign.Verifier, error) {
	keys := r.cfg.Policy.Keys(env)
	if len(keys) == 0 {
		keys = r.cfg.Keys
	}
	v, found, err := r.store.verifiedDigest(ctx, repository, dgst)
	if err != nil || !found || v.Trust == nil {
		return keys, err
	}
	keys = slices.Clone(keys)
	for _, pem := range v.Trust.Keys {
		k, err := sign.ParseVerifier([]byte(pem))
		if err != nil {
			continue // the verifier refused the admission for it already
		}
		if !slices.ContainsFunc(keys, func(o sign.Verifier) bool { return o.KeyID() == k.KeyID() }) {
			keys = append(keys, k)
		}
	}
	return keys, nil
}
