package evidence

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"golang.org/x/sync/errgroup"
)

// cosign signs and attests, unless told to use the referrers API, in its
// legacy layout: one image manifest under the subject's sha256-<hex>.sig
// tag holding every signature (simple signing layers, as a referrer's),
// and one under .att holding every attestation (a DSSE envelope per
// layer). Another pipeline's cosign sign --key leaves its signature there.
const (
	legacySignature   = ".sig"
	legacyAttestation = ".att"
	// artifactTypeLegacyAttestation marks the .att manifest among the
	// referrers Collect proves.
	artifactTypeLegacyAttestation = "application/vnd.dev.cosign.legacy.att"
)

// legacyTagged returns the manifests under subject's .sig and .att tags,
// as referrers to prove: a .sig's artifact type is a referrer
// signature's, and each names its tag in its ref.name annotation. Both
// tags are asked for at once.
func legacyTagged(ctx context.Context, repo *registry.Repo, subject digest.Digest) ([]v1.Descriptor, error) {
	kinds := []struct{ suffix, artifactType string }{
		{legacySignature, sign.ArtifactTypeCosignSignature},
		{legacyAttestation, artifactTypeLegacyAttestation},
	}
	found := make([]v1.Descriptor, len(kinds))
	eg, ectx := errgroup.WithContext(ctx)
	for i, k := range kinds {
		tag := registry.FallbackTag(subject) + k.suffix
		if !repo.MayHave(tag) {
			continue
		}
		eg.Go(func() error {
			d, ok, err := repo.HeadManifest(ectx, tag)
			if err != nil || !ok {
				return err
			}
			d.ArtifactType, d.Annotations = k.artifactType, map[string]string{v1.AnnotationRefName: tag}
			found[i] = d
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	out := found[:0]
	for _, d := range found {
		if d.Digest != "" {
			out = append(out, d)
		}
	}
	return out, nil
}

// legacyAttestations checks every DSSE envelope layer of cosign's .att
// manifest att: each signed by one of keys, its statement about subject.
func legacyAttestations(ctx context.Context, repo *registry.Repo, att, subject digest.Digest, keys []sign.Verifier) ([]Attestation, error) {
	m, err := manifest(ctx, repo, att)
	if err != nil {
		return nil, err
	}
	var out []Attestation
	for _, l := range m.Layers {
		if l.MediaType != sign.MediaTypeDSSE {
			continue
		}
		content, err := smallBlob(ctx, repo, l)
		if err != nil {
			return nil, err
		}
		var env dsse.Envelope
		if err := json.Unmarshal(content, &env); err != nil {
			return nil, &failure.Error{Class: failure.Schema, Err: err, Hint: "cosign's attestation layer is not a DSSE envelope: delete the .att tag, and attest again"}
		}
		st, keyID, err := sign.VerifyStatement(ctx, &env, subject, keys)
		if err != nil {
			return nil, unproven(err)
		}
		out = append(out, Attestation{Digest: att, KeyID: keyID, Statement: st})
	}
	if len(out) == 0 {
		return nil, &failure.Error{Class: failure.Schema, Err: errors.New("cosign's .att manifest holds no DSSE envelope"),
			Hint: "the tag says it holds attestations but holds none: delete it"}
	}
	return out, nil
}
