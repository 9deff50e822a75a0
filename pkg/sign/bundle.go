package sign

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/digestline/digestline/pkg/oci"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// An attestation is stored as cosign stores one (`cosign attest
// --new-bundle-format`) and `cosign verify-attestation --new-bundle-format`
// reads it: an OCI referrer of type MediaTypeBundle whose one layer is a
// sigstore bundle v0.3 holding the DSSE envelope of an in-toto statement.
const (
	MediaTypeBundle               = "application/vnd.dev.sigstore.bundle.v0.3+json"
	AnnotationBundleContent       = "dev.sigstore.bundle.content"
	AnnotationBundlePredicateType = "dev.sigstore.bundle.predicateType"
)

// bundle is a sigstore bundle v0.3 with a key-signed DSSE envelope: no
// certificate and no transparency log entry (there is no log here).
type bundle struct {
	MediaType            string `json:"mediaType"`
	VerificationMaterial struct {
		PublicKey struct {
			Hint string `json:"hint"`
		} `json:"publicKey"`
	} `json:"verificationMaterial"`
	DSSEEnvelope *dsse.Envelope `json:"dsseEnvelope"`
}

// Attest signs predicate (of predicateType) about image (a manifest's
// descriptor, named name: registry/repository) and puts it into store as a
// sigstore bundle attached to image.
func Attest(ctx context.Context, s Signer, name string, image v1.Descriptor, predicateType string, predicate any, created time.Time, store oci.BlobStore) (oci.Graph, error) {
	st, err := NewStatement(name, image.Digest, predicateType, predicate)
	if err != nil {
		return oci.Graph{}, err
	}
	env, err := SignStatement(ctx, s, st)
	if err != nil {
		return oci.Graph{}, err
	}
	der, err := x509.MarshalPKIXPublicKey(s.Public())
	if err != nil {
		return oci.Graph{}, err
	}
	hint := sha256.Sum256(der)
	b := bundle{MediaType: MediaTypeBundle, DSSEEnvelope: env}
	b.VerificationMaterial.PublicKey.Hint = base64.StdEncoding.EncodeToString(hint[:])
	content, err := json.Marshal(b)
	if err != nil {
		return oci.Graph{}, err
	}
	subject := v1.Descriptor{MediaType: image.MediaType, Digest: image.Digest, Size: image.Size}
	return oci.BuildArtifact(ctx, oci.ArtifactConfig{
		ArtifactType: MediaTypeBundle,
		Files:        []oci.ArtifactFile{{Content: content, Title: "attestation", MediaType: MediaTypeBundle}},
		Annotations:  map[string]string{AnnotationBundleContent: "dsse-envelope", AnnotationBundlePredicateType: predicateType},
		Subject:      &subject,
		Created:      created,
	}, store)
}

// EnvelopeOf reads the DSSE envelope out of a sigstore bundle's bytes.
func EnvelopeOf(content []byte) (*dsse.Envelope, error) {
	var b bundle
	if err := json.Unmarshal(content, &b); err != nil {
		return nil, fmt.Errorf("sigstore bundle: %w", err)
	}
	if b.DSSEEnvelope == nil {
		return nil, fmt.Errorf("sigstore bundle %s holds no DSSE envelope", b.MediaType)
	}
	return b.DSSEEnvelope, nil
}
