package verifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// verifyEvidence proves what is signed about the image with the trusted
// keys: every cosign signature listed as a referrer of root must be one of
// the keys' over root's digest, and at least one must be there; every
// attestation (a sigstore bundle) must be a DSSE envelope one of the keys
// signed, of a statement about root. Each is read by digest and hashed
// against its descriptor before its signature is checked.
func verifyEvidence(ctx context.Context, repo *registry.Repo, root digest.Digest, keys []sign.Verifier, rep *Report) error {
	listed, err := repo.Referrers(ctx, root)
	if err != nil {
		return registryError(err, "manifest → referrers")
	}
	signatures := 0
	for _, d := range listed {
		path := fmt.Sprintf("manifest → referrer %s %s", d.ArtifactType, d.Digest)
		var err error
		switch d.ArtifactType {
		case sign.ArtifactTypeCosignSignature:
			var keyIDs []string
			if keyIDs, err = verifySignature(ctx, repo, d.Digest, root, keys); err == nil {
				for _, id := range keyIDs {
					rep.Checks = append(rep.Checks, fmt.Sprintf("[VERIFY] signature %s by key %s: valid", d.Digest, id))
				}
				signatures += len(keyIDs)
			}
		case sign.MediaTypeBundle:
			var st sign.Statement
			var keyID string
			if st, keyID, err = verifyAttestation(ctx, repo, d.Digest, root, keys); err == nil {
				rep.Checks = append(rep.Checks, fmt.Sprintf("[VERIFY] attestation %s %s by key %s: valid", st.PredicateType, d.Digest, keyID))
			}
		}
		if err != nil {
			e := registryError(err, path)
			e.Path = path
			return e
		}
	}
	if signatures == 0 {
		return &failure.Error{Class: failure.NotFound, Path: "manifest → referrers", Err: fmt.Errorf("%s has no signature", root),
			Hint: "sign it: give the builder a key (DIGESTLINE_SIGNING_KEY), or cosign sign --key … --registry-referrers-mode=oci-1-1"}
	}
	return nil
}

// verifyAttestation checks the sigstore bundle attestation: its DSSE
// envelope signed by one of keys, its statement about root.
func verifyAttestation(ctx context.Context, repo *registry.Repo, att, root digest.Digest, keys []sign.Verifier) (sign.Statement, string, error) {
	m, err := referrerManifest(ctx, repo, att)
	if err != nil {
		return sign.Statement{}, "", err
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != sign.MediaTypeBundle {
		return sign.Statement{}, "", &failure.Error{Class: failure.Schema, Err: errors.New("the attestation manifest does not hold one sigstore bundle"),
			Hint: "the referrer says it is a sigstore bundle but holds none: delete it"}
	}
	content, err := readSmallBlob(ctx, repo, m.Layers[0])
	if err != nil {
		return sign.Statement{}, "", err
	}
	env, err := sign.EnvelopeOf(content)
	if err != nil {
		return sign.Statement{}, "", &failure.Error{Class: failure.Schema, Err: err, Hint: "the attestation is not a sigstore bundle with a DSSE envelope: delete it"}
	}
	st, keyID, err := sign.VerifyStatement(ctx, env, root, keys)
	if err != nil {
		return st, keyID, evidenceError(err)
	}
	return st, keyID, nil
}

// evidenceError classifies a signature that does not verify.
func evidenceError(err error) *failure.Error {
	if errors.Is(err, sign.ErrWrongSubject) {
		return &failure.Error{Class: failure.Integrity, Err: err,
			Hint: "evidence about another image is attached to this one: delete the referrer, and find who attached it"}
	}
	return &failure.Error{Class: failure.Integrity, Err: err,
		Hint: "the signature is not a trusted key's over this image: it was tampered with, or made with a key not in DIGESTLINE_TRUSTED_KEYS (or verify --key)"}
}

// referrerManifest reads a referrer's image manifest by digest.
func referrerManifest(ctx context.Context, repo *registry.Repo, d digest.Digest) (v1.Manifest, error) {
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

// verifySignature checks every simple signing layer of the signature
// manifest sig, and returns the ids of the keys that made them.
func verifySignature(ctx context.Context, repo *registry.Repo, sig, root digest.Digest, keys []sign.Verifier) ([]string, error) {
	m, err := referrerManifest(ctx, repo, sig)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, l := range m.Layers {
		if l.MediaType != sign.MediaTypeSimpleSigning {
			continue
		}
		payload, err := readSmallBlob(ctx, repo, l)
		if err != nil {
			return nil, err
		}
		id, err := sign.VerifyImageSignature(payload, l.Annotations[sign.AnnotationCosignSignature], root, keys)
		if err != nil {
			return nil, evidenceError(err)
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil, &failure.Error{Class: failure.Schema, Err: errors.New("the signature manifest holds no simple signing layer"),
			Hint: "the referrer says it is a cosign signature but holds none: delete it"}
	}
	return ids, nil
}

// readSmallBlob reads a blob of at most a manifest's size and checks it
// against its descriptor.
func readSmallBlob(ctx context.Context, repo *registry.Repo, d v1.Descriptor) ([]byte, error) {
	if d.Size > oci.MaxManifestSize {
		return nil, &failure.Error{Class: failure.Schema, Err: fmt.Errorf("signature payload %s is %d bytes", d.Digest, d.Size), Hint: "a signature payload is small: this is not one"}
	}
	rc, err := repo.Open(ctx, d.Digest)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, d.Size+1))
	if err != nil {
		return nil, &failure.Error{Class: failure.Transport, Err: fmt.Errorf("read %s: %w", d.Digest, err), Hint: "the connection to the registry broke: retry"}
	}
	if int64(len(b)) != d.Size || digest.FromBytes(b) != d.Digest {
		return nil, &failure.Error{Class: failure.Integrity, Err: fmt.Errorf("blob %s does not match its descriptor", d.Digest),
			Hint: "the registry serves other bytes for the signature's payload: it is corrupted or substituted"}
	}
	return b, nil
}
