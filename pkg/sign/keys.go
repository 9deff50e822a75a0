// Package sign signs digests and verifies signatures over them: key files
// (ECDSA P-256 and Ed25519, PEM; cosign's encrypted private keys), signed
// in the formats the ecosystem's tools verify (cosign's simple signing for
// images, DSSE for attestations).
//
// Signer and Verifier are the seam for signers that are not key files: a
// KMS key or a keyless (Fulcio) signer implements Signer with its own
// KeyID; nothing else changes.
package sign

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
)

// Signer signs payloads with one private key. Implementations keep the key
// to themselves: nothing they return or print holds it, and are safe for
// concurrent use (a builder signs several builds, and parts of one, at once).
type Signer interface {
	// KeyID names the key: the sha256 of its public key (PKIX DER), so
	// a signer and the trusted public key agree on it.
	KeyID() string
	Public() crypto.PublicKey
	Sign(ctx context.Context, payload []byte) ([]byte, error)
}

// Verifier checks signatures made by one key.
type Verifier interface {
	KeyID() string
	Public() crypto.PublicKey
	// Verify returns nil when sig is the key's signature of payload.
	Verify(payload, sig []byte) error
}

// ErrBadSignature: the signature is not the key's over the payload.
var ErrBadSignature = errors.New("signature does not verify")

// KeyID is the id of a public key: "sha256:" and the hex sha256 of its PKIX
// DER encoding.
func KeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("encode public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// keySigner signs with a private key held in memory.
type keySigner struct {
	id  string
	key crypto.Signer
}

func (s *keySigner) KeyID() string            { return s.id }
func (s *keySigner) Public() crypto.PublicKey { return s.key.Public() }

// String names the key, never its bytes: a Signer printed in a log line
// says which key it is.
func (s *keySigner) String() string   { return "signer " + s.id }
func (s *keySigner) GoString() string { return s.String() }

func (s *keySigner) Sign(_ context.Context, payload []byte) ([]byte, error) {
	switch k := s.key.(type) {
	case *ecdsa.PrivateKey:
		// Without a random source, Go signs deterministically (RFC 6979):
		// the same build signs to the same bytes, so a signature is as
		// reproducible as the image it signs.
		sum := sha256.Sum256(payload)
		return k.Sign(nil, sum[:], crypto.SHA256)
	case ed25519.PrivateKey:
		return ed25519.Sign(k, payload), nil
	}
	return nil, fmt.Errorf("unsupported key type %T", s.key)
}

// keyVerifier verifies with a public key.
type keyVerifier struct {
	id  string
	key crypto.PublicKey
}

func (v *keyVerifier) KeyID() string            { return v.id }
func (v *keyVerifier) Public() crypto.PublicKey { return v.key }

func (v *keyVerifier) Verify(payload, sig []byte) error {
	ok := false
	switch k := v.key.(type) {
	case *ecdsa.PublicKey:
		sum := sha256.Sum256(payload)
		ok = ecdsa.VerifyASN1(k, sum[:], sig)
	case ed25519.PublicKey:
		ok = ed25519.Verify(k, payload, sig)
	}
	if !ok {
		return fmt.Errorf("%w with key %s", ErrBadSignature, v.id)
	}
	return nil
}

// NewSigner signs with key: an ECDSA P-256 or Ed25519 private key.
func NewSigner(key crypto.Signer) (Signer, error) {
	if err := supported(key.Public()); err != nil {
		return nil, err
	}
	id, err := KeyID(key.Public())
	if err != nil {
		return nil, err
	}
	return &keySigner{id: id, key: key}, nil
}

// NewVerifier verifies with pub: an ECDSA P-256 or Ed25519 public key.
func NewVerifier(pub crypto.PublicKey) (Verifier, error) {
	if err := supported(pub); err != nil {
		return nil, err
	}
	id, err := KeyID(pub)
	if err != nil {
		return nil, err
	}
	return &keyVerifier{id: id, key: pub}, nil
}

func supported(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return nil
		}
		return fmt.Errorf("ECDSA key on curve %s: only P-256 is supported (cosign generate-key-pair makes one)", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return nil
	}
	return fmt.Errorf("a %T key: only ECDSA P-256 and Ed25519 keys are supported", pub)
}

// PEM block types of private keys: PKCS#8, SEC 1, and cosign's encrypted
// keys (scrypt and secretbox around PKCS#8, under the two names cosign has
// used).
const (
	pemPKCS8          = "PRIVATE KEY"
	pemSEC1           = "EC PRIVATE KEY"
	pemCosignSigstore = "ENCRYPTED SIGSTORE PRIVATE KEY"
	pemCosignLegacy   = "ENCRYPTED COSIGN PRIVATE KEY"
)

// LoadSigner reads a private key file: PEM, PKCS#8 or SEC 1 (ECDSA
// P-256, Ed25519), or cosign's encrypted key (cosign generate-key-pair)
// opened with password. Errors name the file, never the key.
func LoadSigner(path string, password []byte) (Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("signing key %s: not PEM: want a PEM private key (ECDSA P-256 or Ed25519), e.g. from cosign generate-key-pair or openssl genpkey", path)
	}
	var key any
	switch block.Type {
	case pemPKCS8:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case pemSEC1:
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case pemCosignSigstore, pemCosignLegacy:
		if len(password) == 0 {
			return nil, fmt.Errorf("signing key %s is encrypted (cosign): set its password (COSIGN_PASSWORD)", path)
		}
		der, derr := encrypted.Decrypt(block.Bytes, password)
		if derr != nil {
			return nil, fmt.Errorf("signing key %s: cannot decrypt it with the password given: %w", path, derr)
		}
		key, err = x509.ParsePKCS8PrivateKey(der)
	default:
		return nil, fmt.Errorf("signing key %s: PEM block %q: want PRIVATE KEY, EC PRIVATE KEY or a cosign encrypted key", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("signing key %s: a %T cannot sign", path, key)
	}
	s, err := NewSigner(signer)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return s, nil
}

// LoadVerifier reads a public key file (PEM "PUBLIC KEY", PKIX: ECDSA
// P-256 or Ed25519, as cosign.pub is).
func LoadVerifier(path string) (Verifier, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	v, err := ParseVerifier(data)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	return v, nil
}

// ReadPublicKeys reads public key files, checks each is one ParseVerifier
// takes, and returns their PEM text: what travels in an event for a
// verifier elsewhere to prove with.
func ReadPublicKeys(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("public key: %w", err)
		}
		if _, err := ParseVerifier(data); err != nil {
			return nil, fmt.Errorf("public key %s: %w", p, err)
		}
		out = append(out, string(data))
	}
	return out, nil
}

// ParseVerifier reads a public key (PEM "PUBLIC KEY", PKIX: ECDSA P-256 or
// Ed25519, as cosign.pub is).
func ParseVerifier(data []byte) (Verifier, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New("want a PEM PUBLIC KEY (PKIX), e.g. cosign.pub")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	return NewVerifier(pub)
}

// Generate makes a key pair — ECDSA P-256, or Ed25519 when ed is true —
// and writes the private key (PKCS#8 PEM, readable by its owner only) to
// privPath and the public key (PKIX PEM, as cosign.pub) to pubPath. It
// refuses to overwrite either.
func Generate(privPath, pubPath string, ed bool) (Signer, error) {
	var key crypto.Signer
	var err error
	if ed {
		_, key, err = ed25519.GenerateKey(nil)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	}
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		path, typ string
		der       []byte
		mode      os.FileMode
	}{{privPath, pemPKCS8, der, 0o600}, {pubPath, "PUBLIC KEY", pub, 0o644}} {
		out, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
		if err != nil {
			return nil, fmt.Errorf("key file: %w", err)
		}
		if err := pem.Encode(out, &pem.Block{Type: f.typ, Bytes: f.der}); err != nil {
			_ = out.Close()
			return nil, fmt.Errorf("key file %s: %w", f.path, err)
		}
		if err := out.Close(); err != nil {
			return nil, fmt.Errorf("key file %s: %w", f.path, err)
		}
	}
	return NewSigner(key)
}
