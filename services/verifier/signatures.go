package verifier

import (
	"context"
	"fmt"

	"github.com/digestline/digestline/pkg/evidence"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/opencontainers/go-digest"
)

// verifyEvidence proves what is signed about the image with the trusted
// keys: every signature and attestation attached must be one of the keys'
// about root (the first that is not fails the verification as integrity,
// naming it), and at least one signature must be there.
func verifyEvidence(ctx context.Context, repo *registry.Repo, root digest.Digest, keys []sign.Verifier, rep *Report) error {
	ev, err := evidence.Collect(ctx, repo, root, keys)
	if err != nil {
		return registryError(err, "manifest → referrers")
	}
	if len(ev.Problems) > 0 {
		return ev.Problems[0].Err
	}
	for _, s := range ev.Signatures {
		rep.Checks = append(rep.Checks, fmt.Sprintf("[VERIFY] signature %s by key %s: valid", s.Digest, s.KeyID))
	}
	for _, a := range ev.Attestations {
		rep.Checks = append(rep.Checks, fmt.Sprintf("[VERIFY] attestation %s %s by key %s: valid", a.Statement.PredicateType, a.Digest, a.KeyID))
	}
	if len(ev.Signatures) == 0 {
		return &failure.Error{Class: failure.NotFound, Path: "manifest → referrers", Err: fmt.Errorf("%s has no signature", root),
			Hint: "sign it: give the builder a key (DIGESTLINE_SIGNING_KEY), or cosign sign --key … --registry-referrers-mode=oci-1-1"}
	}
	return nil
}
