package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
)

// Evidence proves what is signed about ref with opts' keys, as Image does
// beside the bytes, and returns its [VERIFY] lines. A proof that found
// no signature (or provenance) by the keys wraps ErrUnsigned: asked again
// later, it reads only the listings and what was attached since.
func Evidence(ctx context.Context, c *registry.Client, ref name.Digest, opts Options) ([]string, error) {
	repo, err := c.Open(ctx, ref.Context(), false)
	if err != nil {
		return nil, registryError(err, "")
	}
	return verifyEvidence(ctx, repo.Shared(), ref, opts)
}

// verifyEvidence proves what is signed about the image with the trusted
// keys, and returns its [VERIFY] lines: every signature and attestation
// attached must be one of the keys' about the digest (the first that is not
// fails the verification as integrity, naming it), and at least one
// signature must be there. Evidence by opts.Also's keys is proven too,
// but only a signature by opts.Keys counts.
func verifyEvidence(ctx context.Context, repo *registry.Repo, ref name.Digest, opts Options) ([]string, error) {
	root, err := digest.Parse(ref.DigestStr())
	if err != nil {
		return nil, &failure.Error{Class: failure.Schema, Err: err, Hint: "verify takes REPOSITORY@sha256:<hex>"}
	}
	ev, err := opts.Proven.Collect(ctx, repo, root, append(slices.Clip(opts.Keys), opts.Also...))
	if err != nil {
		return nil, registryError(err, "manifest → referrers")
	}
	if len(ev.Problems) > 0 {
		return nil, ev.Problems[0].Err
	}
	var (
		checks []string
		signed bool
	)
	for _, s := range ev.Signatures {
		checks = append(checks, fmt.Sprintf("[VERIFY] signature %s by key %s: valid", s.Digest, s.KeyID))
		signed = signed || slices.ContainsFunc(opts.Keys, func(k sign.Verifier) bool { return k.KeyID() == s.KeyID })
	}
	for _, a := range ev.Attestations {
		checks = append(checks, fmt.Sprintf("[VERIFY] attestation %s %s by key %s: valid", a.Statement.PredicateType, a.Digest, a.KeyID))
	}
	if !signed {
		return nil, &failure.Error{Class: failure.NotFound, Path: "manifest → referrers", Err: unsigned(fmt.Sprintf("%s has no signature by a trusted key (%s)", root, keyIDs(opts.Keys))),
			Hint: fmt.Sprintf("sign it with one of those keys (cosign sign --key cosign.key %s); digestline signs its own builds when the builder has a key (DIGESTLINE_SIGNING_KEY)", ref)}
	}
	if opts.Provenance != nil {
		check, err := requireProvenance(ev.Attestations, opts.Keys, *opts.Provenance)
		if err != nil {
			return nil, err
		}
		checks = append(checks, check)
	}
	return checks, nil
}

// ErrUnsigned is a verification that found no signature, or no
// provenance, by the keys it asked for: not signed yet, or never.
var ErrUnsigned = errors.New("no signature or provenance by the trusted keys")

// unsigned is an error that is ErrUnsigned, in its own words.
type unsigned string

func (u unsigned) Error() string        { return string(u) }
func (u unsigned) Is(target error) bool { return target == ErrUnsigned }

// keyIDs names the keys, for a person reading why nothing verified.
func keyIDs(keys []sign.Verifier) string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = "key " + k.KeyID()
	}
	return strings.Join(ids, ", ")
}
