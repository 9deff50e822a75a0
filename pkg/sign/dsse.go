package sign

import (
	"context"
	"crypto"
	"encoding/json"
	"fmt"

	"github.com/opencontainers/go-digest"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// PayloadTypeInToto is the DSSE payload type of an in-toto statement.
const PayloadTypeInToto = "application/vnd.in-toto+json"

// StatementType is the in-toto statement's _type (v1).
const StatementType = "https://in-toto.io/Statement/v1"

// StatementTypeV01 is the _type of the in-toto statements cosign attest
// writes in its legacy layout (sha256-<hex>.att): the same fields as v1.
const StatementTypeV01 = "https://in-toto.io/Statement/v0.1"

// MediaTypeDSSE is a layer holding one DSSE envelope: cosign's legacy
// attestations (its .att tags) are image manifests of such layers.
const MediaTypeDSSE = "application/vnd.dsse.envelope.v1+json"

// The predicate types digestline attests: the builder's provenance and the
// reporter's verification summary of a promotion.
const (
	PredicateSLSAProvenance = "https://slsa.dev/provenance/v1"
	PredicateSLSAVSA        = "https://slsa.dev/verification_summary/v1"
)

// Statement is an in-toto statement: a predicate about subjects, each
// named by its digests.
type Statement struct {
	Type          string          `json:"_type"`
	Subject       []Subject       `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

// Subject is one artifact a statement is about.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// NewStatement states predicate (of predicateType) about the image named
// name at digest d.
func NewStatement(name string, d digest.Digest, predicateType string, predicate any) (Statement, error) {
	body, err := json.Marshal(predicate)
	if err != nil {
		return Statement{}, fmt.Errorf("predicate %s: %w", predicateType, err)
	}
	return Statement{Type: StatementType, PredicateType: predicateType, Predicate: body,
		Subject: []Subject{{Name: name, Digest: map[string]string{d.Algorithm().String(): d.Encoded()}}}}, nil
}

// About reports whether the statement names digest d among its subjects.
func (s Statement) About(d digest.Digest) bool {
	for _, sub := range s.Subject {
		if sub.Digest[d.Algorithm().String()] == d.Encoded() {
			return true
		}
	}
	return false
}

// SignStatement signs st as a DSSE envelope (payload type in-toto). The
// envelope names no key id: verifiers try their keys (cosign does the same,
// and would skip a signature whose key id is not in its own format).
func SignStatement(ctx context.Context, s Signer, st Statement) (*dsse.Envelope, error) {
	body, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	es, err := dsse.NewEnvelopeSigner(dsseSigner{s})
	if err != nil {
		return nil, err
	}
	env, err := es.SignPayload(ctx, PayloadTypeInToto, body)
	if err != nil {
		return nil, fmt.Errorf("sign statement with key %s: %w", s.KeyID(), err)
	}
	return env, nil
}

// VerifyStatement checks env's signature with keys (one of them must have
// signed it) and that its statement is about d; it returns the statement
// and the id of the key that signed it.
func VerifyStatement(ctx context.Context, env *dsse.Envelope, d digest.Digest, keys []Verifier) (Statement, string, error) {
	if env.PayloadType != PayloadTypeInToto {
		return Statement{}, "", fmt.Errorf("%w: payload type %q is not an in-toto statement", ErrBadSignature, env.PayloadType)
	}
	if len(keys) == 0 {
		return Statement{}, "", fmt.Errorf("%w: no trusted key to check it with", ErrBadSignature)
	}
	providers := make([]dsse.Verifier, len(keys))
	for i, k := range keys {
		providers[i] = dsseVerifier{k}
	}
	ev, err := dsse.NewMultiEnvelopeVerifier(1, providers...)
	if err != nil {
		return Statement{}, "", err
	}
	accepted, body, err := ev.VerifyAndDecode(ctx, env)
	if err != nil || len(accepted) == 0 {
		return Statement{}, "", fmt.Errorf("%w with any trusted key: %v", ErrBadSignature, err)
	}
	var st Statement
	if err := json.Unmarshal(body, &st); err != nil || (st.Type != StatementType && st.Type != StatementTypeV01) {
		return Statement{}, "", fmt.Errorf("%w: the signed payload is no in-toto statement (v1 or v0.1)", ErrBadSignature)
	}
	if !st.About(d) {
		return st, accepted[0].KeyID, fmt.Errorf("%w: the statement's subjects are %v, not %s", ErrWrongSubject, st.Subject, d)
	}
	return st, accepted[0].KeyID, nil
}

// dsseSigner is a Signer as securesystemslib's DSSE signs with.
type dsseSigner struct{ s Signer }

func (d dsseSigner) Sign(ctx context.Context, data []byte) ([]byte, error) {
	return d.s.Sign(ctx, data)
}
func (d dsseSigner) KeyID() (string, error) { return "", nil }

// dsseVerifier is a Verifier as securesystemslib's DSSE verifies with.
type dsseVerifier struct{ v Verifier }

func (d dsseVerifier) Verify(_ context.Context, data, sig []byte) error { return d.v.Verify(data, sig) }
func (d dsseVerifier) KeyID() (string, error)                           { return d.v.KeyID(), nil }
func (d dsseVerifier) Public() crypto.PublicKey                         { return d.v.Public() }
