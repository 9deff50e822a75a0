package reporter

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/evidence"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/opencontainers/go-digest"
)

// VerifierID names the reporter as the verifier of its summaries.
const VerifierID = "https://github.com/digestline/digestline/services/reporter"

// VSA is the SLSA verification summary v1 the reporter signs for every
// promotion (https://slsa.dev/spec/v1.0/verification_summary): which
// policy admitted which digest, on which evidence. Promotion says where
// to and on whose request.
type VSA struct {
	Verifier struct {
		ID string `json:"id"`
	} `json:"verifier"`
	TimeVerified       time.Time        `json:"timeVerified"`
	ResourceURI        string           `json:"resourceUri"`
	Policy             ResourceRef      `json:"policy"`
	InputAttestations  []ResourceRef    `json:"inputAttestations"`
	VerificationResult string           `json:"verificationResult"`
	VerifiedLevels     []string         `json:"verifiedLevels"`
	SLSAVersion        string           `json:"slsaVersion"`
	Promotion          events.Promotion `json:"promotion"`
}

// ResourceRef names a resource by URI and digest.
type ResourceRef struct {
	URI    string            `json:"uri"`
	Digest map[string]string `json:"digest,omitempty"`
}

func digestSet(d digest.Digest) map[string]string {
	return map[string]string{d.Algorithm().String(): d.Encoded()}
}

// summary builds rec's verification summary: the environment's policy
// (the built-in gates alone when there is none), and the signatures and
// attestations the environment's keys prove about the digest.
func (r *reporter) summary(ctx context.Context, reg *registry.Repo, rec events.Promotion) (VSA, error) {
	var v VSA
	v.Verifier.ID = VerifierID
	v.TimeVerified = rec.PromotedAt
	v.ResourceURI = "oci://" + rec.Place() + "@" + rec.Digest
	v.VerificationResult = "PASSED"
	v.VerifiedLevels = []string{}
	v.SLSAVersion = "1.0"
	v.Promotion = rec
	v.Policy = ResourceRef{URI: "https://github.com/digestline/digestline/blob/main/docs/policy.md#built-in-gates"}
	if p := r.cfg.Policy; p.Has(rec.Environment) {
		abs, _ := filepath.Abs(p.Path())
		v.Policy = ResourceRef{URI: "file://" + abs + "#" + rec.Environment, Digest: digestSet(p.Digest())}
	}
	keys, err := r.evidenceKeys(ctx, rec.Environment, rec.Repository, rec.Digest)
	if err != nil {
		return VSA{}, err
	}
	v.InputAttestations = []ResourceRef{}
	if len(keys) > 0 {
		ev, err := r.cfg.Proven.Collect(ctx, reg, digest.Digest(rec.Digest), keys)
		if err != nil {
			return VSA{}, err
		}
		for _, s := range ev.Signatures {
			v.InputAttestations = append(v.InputAttestations, ResourceRef{URI: "oci://" + rec.Place() + "@" + s.Digest.String(), Digest: digestSet(s.Digest)})
		}
		for _, a := range ev.Attestations {
			if summarizes(a, rec) {
				continue // this promotion's own summary, which an earlier try pushed: not evidence for it
			}
			v.InputAttestations = append(v.InputAttestations, ResourceRef{URI: "oci://" + rec.Place() + "@" + a.Digest.String(), Digest: digestSet(a.Digest)})
		}
		// In one order whatever the registry lists them in (it may list
		// them in another once more are attached): the same summary.
		slices.SortFunc(v.InputAttestations, func(a, b ResourceRef) int { return strings.Compare(a.URI, b.URI) })
	}
	return v, nil
}

// summarizes says whether a is the verification summary of rec itself.
// Leaving it out of rec's inputs keeps the summary the same however many
// times the promotion's last step runs, so a redelivery pushes it again
// (nothing new) instead of a second one listing the first.
func summarizes(a evidence.Attestation, rec events.Promotion) bool {
	if a.Statement.PredicateType != sign.PredicateSLSAVSA {
		return false
	}
	var v VSA
	return json.Unmarshal(a.Statement.Predicate, &v) == nil && v.Promotion.Environment == rec.Environment && v.Promotion.RunID == rec.RunID
}
