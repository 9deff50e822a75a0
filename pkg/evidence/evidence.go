// Package evidence reads what is signed about an image — cosign signatures
// and attestations (sigstore bundles of in-toto statements) attached to it
// as referrers — and proves each with the trusted keys. The verifier
// fails an image on evidence that does not verify; the reporter's
// policies count only the evidence that does.
package evidence

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// Signature is a cosign signature a trusted key made over the image.
type Signature struct {
	Digest digest.Digest // the signature's manifest
	KeyID  string
}

// Attestation is a statement about the image a trusted key signed.
type Attestation struct {
	Digest    digest.Digest // the attestation's manifest
	KeyID     string
	Statement sign.Statement
}

// Problem is a referrer that says it is a signature or an attestation and
// does not verify with the trusted keys: tampered, another key's, about
// another image, or malformed.
type Problem struct {
	Referrer v1.Descriptor
	Err      *failure.Error // its Path names the referrer
}

// Evidence is what is attached to an image, and which of it is proven.
type Evidence struct {
	Referrers    []v1.Descriptor
	Signatures   []Signature
	Attestations []Attestation
	Problems     []Problem
}

// Collect lists subject's referrers and proves each signature and
// attestation among them with keys, concurrently. Each is read by digest,
// and its payload hashed against its descriptor, before its signature is
// checked. An error means the registry could not be read.
func Collect(ctx context.Context, repo *registry.Repo, subject digest.Digest, keys []sign.Verifier) (Evidence, error) {
	return (*Cache)(nil).Collect(ctx, repo, subject, keys)
}

// Collect is evidence.Collect that reads and proves only the referrers the
// cache has not seen proven with these keys about this subject; the
// listing is always read, so a referrer deleted since is not counted.
func (c *Cache) Collect(ctx context.Context, repo *registry.Repo, subject digest.Digest, keys []sign.Verifier) (Evidence, error) {
	listed, err := attached(ctx, repo, subject)
	if err != nil {
		return Evidence{}, err
	}
	proofs := make([]proof, len(listed))
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(8)
	for i, d := range listed {
		switch d.ArtifactType {
		case sign.ArtifactTypeCosignSignature, sign.MediaTypeBundle, artifactTypeLegacyAttestation:
		default:
			continue
		}
		key := cacheKey(d.Digest, subject, keys)
		if p, ok := c.get(key); ok {
			proofs[i] = p
			continue
		}
		eg.Go(func() error {
			p, err := prove(ectx, repo, d, subject, keys)
			if err != nil {
				return err // the registry failed us, not the evidence
			}
			if p.problem == nil {
				c.put(key, p)
			}
			proofs[i] = p
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return Evidence{}, err
	}
	ev := Evidence{Referrers: listed}
	for _, p := range proofs {
		ev.Signatures = append(ev.Signatures, p.signatures...)
		ev.Attestations = append(ev.Attestations, p.attestations...)
		if p.problem != nil {
			ev.Problems = append(ev.Problems, *p.problem)
		}
	}
	return ev, nil
}

// attached lists what is attached to subject: its referrers, and the
// manifests under cosign's legacy tags (legacy.go), asked for at once.
func attached(ctx context.Context, repo *registry.Repo, subject digest.Digest) ([]v1.Descriptor, error) {
	var (
		listed, tagged []v1.Descriptor
		taggedErr      error
		wg             sync.WaitGroup
	)
	wg.Go(func() { tagged, taggedErr = legacyTagged(ctx, repo, subject) })
	listed, err := repo.Referrers(ctx, subject)
	wg.Wait()
	if err = cmp.Or(err, taggedErr); err != nil {
		return nil, err
	}
	return append(slices.Clip(listed), tagged...), nil
}

// proof is what one referrer proved: its signatures, its attestations,
// or the problem with it.
type proof struct {
	signatures   []Signature
	attestations []Attestation
	problem      *Problem
}

// prove reads and proves one signature or attestation referrer. A problem
// with the evidence is in the proof; the error is the registry's.
func prove(ctx context.Context, repo *registry.Repo, d v1.Descriptor, subject digest.Digest, keys []sign.Verifier) (proof, error) {
	var (
		p   proof
		err error
	)
	if d.ArtifactType == sign.ArtifactTypeCosignSignature {
		var keyIDs []string
		if keyIDs, err = signature(ctx, repo, d.Digest, subject, keys); err == nil {
			for _, id := range keyIDs {
				p.signatures = append(p.signatures, Signature{Digest: d.Digest, KeyID: id})
			}
		}
	} else if d.ArtifactType == artifactTypeLegacyAttestation {
		p.attestations, err = legacyAttestations(ctx, repo, d.Digest, subject, keys)
	} else {
		var a Attestation
		if a, err = attestation(ctx, repo, d.Digest, subject, keys); err == nil {
			p.attestations = []Attestation{a}
		}
	}
	if err == nil {
		return p, nil
	}
	e := *failure.As(err) // a copy to name the referrer in: err may be shared
	if e.Temporary() {
		return proof{}, &e
	}
	e.Path = fmt.Sprintf("manifest → referrer %s %s", d.ArtifactType, d.Digest)
	p.problem = &Problem{Referrer: d, Err: &e}
	return p, nil
}

// signature checks every simple signing layer of the signature manifest
// sig, and returns the ids of the keys that made them.
func signature(ctx context.Context, repo *registry.Repo, sig, subject digest.Digest, keys []sign.Verifier) ([]string, error) {
	m, err := manifest(ctx, repo, sig)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, l := range m.Layers {
		if l.MediaType != sign.MediaTypeSimpleSigning {
			continue
		}
		payload, err := smallBlob(ctx, repo, l)
		if err != nil {
			return nil, err
		}
		id, err := sign.VerifyImageSignature(payload, l.Annotations[sign.AnnotationCosignSignature], subject, keys)
		if err != nil {
			return nil, unproven(err)
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil, &failure.Error{Class: failure.Schema, Err: errors.New("the signature manifest holds no simple signing layer"),
			Hint: "the referrer says it is a cosign signature but holds none: delete it"}
	}
	return ids, nil
}

// attestation checks a sigstore bundle: its DSSE envelope signed by one of
// keys, its statement about subject.
func attestation(ctx context.Context, repo *registry.Repo, att, subject digest.Digest, keys []sign.Verifier) (Attestation, error) {
	m, err := manifest(ctx, repo, att)
	if err != nil {
		return Attestation{}, err
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != sign.MediaTypeBundle {
		return Attestation{}, &failure.Error{Class: failure.Schema, Err: errors.New("the attestation manifest does not hold one sigstore bundle"),
			Hint: "the referrer says it is a sigstore bundle but holds none: delete it"}
	}
	content, err := smallBlob(ctx, repo, m.Layers[0])
	if err != nil {
		return Attestation{}, err
	}
	env, err := sign.EnvelopeOf(content)
	if err != nil {
		return Attestation{}, &failure.Error{Class: failure.Schema, Err: err, Hint: "the attestation is not a sigstore bundle with a DSSE envelope: delete it"}
	}
	st, keyID, err := sign.VerifyStatement(ctx, env, subject, keys)
	if err != nil {
		return Attestation{}, unproven(err)
	}
	return Attestation{Digest: att, KeyID: keyID, Statement: st}, nil
}

// unproven classifies a signature that does not verify.
func unproven(err error) *failure.Error {
	if errors.Is(err, sign.ErrWrongSubject) {
		return &failure.Error{Class: failure.Integrity, Err: err,
			Hint: "evidence about another image is attached to this one: delete the referrer, and find who attached it"}
	}
	return &failure.Error{Class: failure.Integrity, Err: err,
		Hint: "the signature is not a trusted key's over this image: it was tampered with, or made with a key not trusted here (DIGESTLINE_TRUSTED_KEYS, verify --key, or the environment's keys in the policy)"}
}

// manifest reads a referrer's image manifest by digest.
func manifest(ctx context.Context, repo *registry.Repo, d digest.Digest) (v1.Manifest, error) {
	body, _, err := repo.GetManifest(ctx, d.String()) // hashed against d
	if err != nil {
		return v1.Manifest{}, err
	}
	var m v1.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return v1.Manifest{}, &failure.Error{Class: failure.Schema, Err: fmt.Errorf("referrer manifest: %w", err), Hint: "the referrer is not an image manifest"}
	}
	return m, nil
}

// smallBlob reads a blob of at most a manifest's size, checked against
// its descriptor.
func smallBlob(ctx context.Context, repo *registry.Repo, d v1.Descriptor) ([]byte, error) {
	if d.Size > oci.MaxManifestSize {
		return nil, &failure.Error{Class: failure.Schema, Err: fmt.Errorf("payload %s is %d bytes", d.Digest, d.Size), Hint: "a signed payload is small: this is not one"}
	}
	return repo.ReadBlob(ctx, d)
}
