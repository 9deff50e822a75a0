package sign

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/digestline/digestline/pkg/oci"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Cosign's image signature, as an OCI 1.1 referrer (what `cosign sign
// --registry-referrers-mode=oci-1-1` writes and `cosign verify
// --experimental-oci11` reads): an artifact of type
// ArtifactTypeCosignSignature whose layers are simple signing payloads,
// each with its signature in the layer's AnnotationCosignSignature.
const (
	ArtifactTypeCosignSignature = "application/vnd.dev.cosign.artifact.sig.v1+json"
	MediaTypeSimpleSigning      = "application/vnd.dev.cosign.simplesigning.v1+json"
	AnnotationCosignSignature   = "dev.cosignproject.cosign/signature"
	// AnnotationKeyID names the key that made the signature (KeyID), so a
	// verifier holding several trusted keys knows which to try first.
	AnnotationKeyID = "dev.digestline.key-id"
)

// simpleSigningType is the type of a cosign container image signature.
const simpleSigningType = "cosign container image signature"

// SimpleSigning is the payload signed for an image: which manifest digest,
// under which repository.
type SimpleSigning struct {
	Critical struct {
		Identity struct {
			DockerReference string `json:"docker-reference"`
		} `json:"identity"`
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
	Optional map[string]any `json:"optional"`
}

// ErrWrongSubject: a signature or statement is about another digest than
// the one it is attached to.
var ErrWrongSubject = errors.New("signed for another digest")

// SignImage signs image (a manifest's descriptor) as held in repository
// (registry/path) and puts the signature, cosign's format, into store as
// an artifact whose subject is image.
func SignImage(ctx context.Context, s Signer, repository string, image v1.Descriptor, created time.Time, store oci.BlobStore) (oci.Graph, error) {
	var p SimpleSigning
	p.Critical.Identity.DockerReference = repository
	p.Critical.Image.DockerManifestDigest = image.Digest.String()
	p.Critical.Type = simpleSigningType
	payload, err := json.Marshal(p)
	if err != nil {
		return oci.Graph{}, err
	}
	sig, err := s.Sign(ctx, payload)
	if err != nil {
		return oci.Graph{}, fmt.Errorf("sign %s with key %s: %w", image.Digest, s.KeyID(), err)
	}
	subject := v1.Descriptor{MediaType: image.MediaType, Digest: image.Digest, Size: image.Size}
	return oci.BuildArtifact(ctx, oci.ArtifactConfig{
		ArtifactType: ArtifactTypeCosignSignature,
		Files: []oci.ArtifactFile{{Content: payload, Title: "signature", MediaType: MediaTypeSimpleSigning,
			Annotations: map[string]string{AnnotationCosignSignature: base64.StdEncoding.EncodeToString(sig), AnnotationKeyID: s.KeyID()}}},
		Subject:         &subject,
		Created:         created,
		ConfigMediaType: ArtifactTypeCosignSignature, // as cosign writes it: listed by type on any registry
	}, store)
}

// VerifyImageSignature checks one simple signing layer: its payload (the
// layer's bytes) signed as sigB64 by one of keys, naming image. It returns
// the id of the key that verified it.
func VerifyImageSignature(payload []byte, sigB64 string, image digest.Digest, keys []Verifier) (string, error) {
	sig, err := base64.StdEncoding.DecodeString(sigB64)
	if err != nil {
		return "", fmt.Errorf("%w: the signature annotation is not base64", ErrBadSignature)
	}
	keyID, err := verifyAny(payload, sig, keys)
	if err != nil {
		return "", err
	}
	var p SimpleSigning
	if err := json.Unmarshal(payload, &p); err != nil || p.Critical.Type != simpleSigningType {
		return keyID, fmt.Errorf("%w: the signed payload is no cosign image signature", ErrBadSignature)
	}
	if got := p.Critical.Image.DockerManifestDigest; got != image.String() {
		return keyID, fmt.Errorf("%w: %s, attached to %s", ErrWrongSubject, got, image)
	}
	return keyID, nil
}

// verifyAny returns the id of the first key that verifies sig over payload.
func verifyAny(payload, sig []byte, keys []Verifier) (string, error) {
	if len(keys) == 0 {
		return "", fmt.Errorf("%w: no trusted key to check it with", ErrBadSignature)
	}
	for _, k := range keys {
		if k.Verify(payload, sig) == nil {
			return k.KeyID(), nil
		}
	}
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.KeyID()
	}
	return "", fmt.Errorf("%w with any trusted key (%v)", ErrBadSignature, ids)
}
