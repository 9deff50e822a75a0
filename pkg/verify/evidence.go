package verify

import (
	"context"
	"fmt"

	"github.com/digestline/digestline/pkg/evidence"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
)

// verifyEvidence proves what is signed about the image with the trusted
// keys, and returns its [VERIFY] lines: every signature and attestation
// attached must be one of the keys' about the digest (the first that is not
// fails the verification as integrity, naming it), and at least one
// signature must be there.
func verifyEvidence(ctx context.Context, repo *registry.Repo, ref name.Digest, keys []sign.Verifier, proven *evidence.Cache) ([]string, error) {
	root, err := digest.Parse(ref.DigestStr())
	if err != nil {
		return nil, &failure.Error{Class: failure.Schema, Err: err, Hint: "verify takes REPOSITORY@sha256:<hex>"}
	}
	ev, err := proven.Collect(ctx, repo, root, keys)
	if err != nil {
		return nil, registryError(err, "manifest → referrers")
	}
	if len(ev.Problems) > 0 {
		return nil, ev.Problems[0].Err
	}
	var checks []string
	for _, s := range ev.Signatures {
		checks = append(checks, fmt.Sprintf("[VERIFY] signature %s by key %s: valid", s.Digest, s.KeyID))
	}
	for _, a := range ev.Attestations {
		checks = append(checks, fmt.Sprintf("[VERIFY] attestation %s %s by key %s: valid", a.Statement.PredicateType, a.Digest, a.KeyID))
	}
	if len(ev.Signatures) == 0 {
		return nil, &failure.Error{Class: failure.NotFound, Path: "manifest → referrers", Err: fmt.Errorf("%s has no signature", root),
			Hint: "sign it: give the builder a key (DIGESTLINE_SIGNING_KEY), or cosign sign --key … --registry-referrers-mode=oci-1-1"}
	}
	return checks, nil
}
