package reporter

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// policyInput gathers what the environment's rules read about req's
// digest, and only that: the signatures and attestations the
// environment's keys prove (the reporter's trusted keys when the policy
// names none), every referrer, the packages of its SBOM, the approvals,
// and the time spent in the previous environment. Each of these costs
// requests to the registry or the bus.
func (r *reporter) policyInput(ctx context.Context, reg *registry.Repo, req events.PromotionRequest, now time.Time) (map[string]any, error) {
	input := map[string]any{"environment": req.To, "repository": req.Repository, "digest": req.Digest, "requested_by": req.RequestedBy, "now": now}
	reads := func(vars ...string) bool {
		return slices.ContainsFunc(vars, func(v string) bool { return r.cfg.Policy.Reads(req.To, v) })
	}
	if reads("signatures", "attestations", "provenance", "referrers", "packages") {
		if err := r.evidenceInput(ctx, reg, req, input); err != nil {
			return nil, err
		}
	}
	if reads("approvals") {
		recs, err := r.store.approvals(ctx, req.To, req.Repository, req.Digest)
		if err != nil {
			return nil, err
		}
		approvals := []any{}
		for _, a := range recs {
			approvals = append(approvals, map[string]any{"by": a.By, "at": a.At})
		}
		input["approvals"] = approvals
	}
	if reads("soak") {
		soak, err := r.soak(ctx, req, now)
		if err != nil {
			return nil, err
		}
		input["soak"] = soak
	}
	return input, nil
}

// evidenceInput adds to input what is attached to req's digest:
// signatures, attestations, provenance, referrers and packages.
func (r *reporter) evidenceInput(ctx context.Context, reg *registry.Repo, req events.PromotionRequest, input map[string]any) error {
	keys, err := r.evidenceKeys(ctx, req.To, req.Repository, req.Digest)
	if err != nil {
		return err
	}
	ev, err := r.cfg.Proven.Collect(ctx, reg, digest.Digest(req.Digest), keys)
	if err != nil {
		return err
	}
	signatures := []any{}
	for _, s := range ev.Signatures {
		signatures = append(signatures, map[string]string{"key": s.KeyID, "digest": s.Digest.String()})
	}
	attestations, provenance := []any{}, map[string]any{}
	for _, a := range ev.Attestations {
		var predicate map[string]any
		_ = json.Unmarshal(a.Statement.Predicate, &predicate) // a statement's predicate is a JSON object
		attestations = append(attestations, map[string]any{"predicateType": a.Statement.PredicateType, "key": a.KeyID, "digest": a.Digest.String(), "predicate": predicate})
		if a.Statement.PredicateType == sign.PredicateSLSAProvenance && len(provenance) == 0 && predicate != nil {
			provenance = predicate
		}
	}
	referrers := []any{}
	for _, d := range ev.Referrers {
		annotations := map[string]any{}
		for k, v := range d.Annotations {
			annotations[k] = v
		}
		referrers = append(referrers, map[string]any{"artifactType": d.ArtifactType, "digest": d.Digest.String(), "annotations": annotations})
	}
	input["signatures"], input["attestations"], input["provenance"], input["referrers"] = signatures, attestations, provenance, referrers
	if r.cfg.Policy.Reads(req.To, "packages") {
		packages, err := sbomPackages(ctx, reg, ev.Referrers)
		if err != nil {
			return err
		}
		input["packages"] = packages
	}
	return nil
}

// soak is how long, at now, the digest has been in the environment before
// req.To (0 for the first environment, or when it is not there now).
func (r *reporter) soak(ctx context.Context, req events.PromotionRequest, now time.Time) (time.Duration, error) {
	for i, env := range r.cfg.Environments {
		if env != req.To || i == 0 {
			continue
		}
		prev, ok, err := r.store.current(ctx, r.cfg.Environments[i-1], req.Repository)
		if err != nil || !ok || prev.Digest != req.Digest {
			return 0, err
		}
		return max(now.Sub(prev.PromotedAt), 0), nil
	}
	return 0, nil
}

// maxSBOM bounds the SBOM read for a policy's packages.
const maxSBOM = 64 << 20

// sbomPackages lists the packages of the digest's SBOM (CycloneDX when
// there is one, else SPDX), each {name, version, purl}; none without an
// SBOM. The SBOM is read by digest and hashed against its descriptor.
func sbomPackages(ctx context.Context, reg *registry.Repo, refs []v1.Descriptor) ([]any, error) {
	out := []any{}
	i := slices.IndexFunc(refs, func(d v1.Descriptor) bool { return d.ArtifactType == oci.MediaTypeCycloneDX })
	if i < 0 {
		i = slices.IndexFunc(refs, func(d v1.Descriptor) bool { return d.ArtifactType == oci.MediaTypeSPDX })
	}
	if i < 0 {
		return out, nil
	}
	body, _, err := reg.GetManifest(ctx, refs[i].Digest.String())
	if err != nil {
		return nil, err
	}
	var m v1.Manifest
	if json.Unmarshal(body, &m) != nil || len(m.Layers) == 0 || m.Layers[0].Size > maxSBOM {
		return out, nil // not an SBOM digestline reads: no packages
	}
	content, err := reg.ReadBlob(ctx, m.Layers[0])
	if err != nil {
		return nil, err
	}
	pkgs, err := oci.SBOMPackages(refs[i].ArtifactType, content)
	if err != nil {
		return out, nil // unreadable: no packages, and a rule asking for some fails
	}
	for _, p := range pkgs {
		out = append(out, map[string]string{"name": p.Name, "version": p.Version, "purl": p.PURL})
	}
	return out, nil
}
