package sign_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/digestline/digestline/pkg/sign"
	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
)

// writeKey writes key as a PEM file of type typ and its public key beside
// it, and returns both paths.
func writeKey(t *testing.T, typ string, der []byte, pub crypto.PublicKey) (string, string) {
	t.Helper()
	dir := t.TempDir()
	priv := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pubPath := filepath.Join(dir, "key.pub")
	if err := os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return priv, pubPath
}

func TestKeyFilesSignAndVerify(t *testing.T) {
	t.Parallel()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub25519, priv25519, _ := ed25519.GenerateKey(rand.Reader)
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	sec1, _ := x509.MarshalECPrivateKey(ec)
	encryptedKey, err := encrypted.Encrypt(pkcs8(ec), []byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		typ      string
		der      []byte
		pub      crypto.PublicKey
		password string
	}{
		{"ecdsa p-256 pkcs8", "PRIVATE KEY", pkcs8(ec), &ec.PublicKey, ""},
		{"ecdsa p-256 sec1", "EC PRIVATE KEY", sec1, &ec.PublicKey, ""},
		{"ed25519 pkcs8", "PRIVATE KEY", pkcs8(priv25519), pub25519, ""},
		{"cosign encrypted", "ENCRYPTED SIGSTORE PRIVATE KEY", encryptedKey, &ec.PublicKey, "correct horse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			privPath, pubPath := writeKey(t, tc.typ, tc.der, tc.pub)
			s, err := sign.LoadSigner(privPath, []byte(tc.password))
			if err != nil {
				t.Fatal(err)
			}
			v, err := sign.LoadVerifier(pubPath)
			if err != nil {
				t.Fatal(err)
			}
			if s.KeyID() != v.KeyID() || !strings.HasPrefix(s.KeyID(), "sha256:") {
				t.Fatalf("key ids %q and %q", s.KeyID(), v.KeyID())
			}
			payload := []byte(`{"digest":"sha256:00"}`)
			sig, err := s.Sign(context.Background(), payload)
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Verify(payload, sig); err != nil {
				t.Fatal(err)
			}
			if err := v.Verify([]byte(`{"digest":"sha256:01"}`), sig); !errors.Is(err, sign.ErrBadSignature) {
				t.Fatalf("a tampered payload verifies: %v", err)
			}
			other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			otherV, _ := sign.NewVerifier(&other.PublicKey)
			if err := otherV.Verify(payload, sig); !errors.Is(err, sign.ErrBadSignature) {
				t.Fatalf("another key verifies: %v", err)
			}
			// Printed any way, a signer names its key, never holds it.
			for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%+v", s), fmt.Sprintf("%#v", s)} {
				if out != "signer "+s.KeyID() {
					t.Fatalf("a signer prints as %q", out)
				}
			}
		})
	}
}

func TestBadKeyFilesAreClearErrors(t *testing.T) {
	t.Parallel()
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(p384)
	p384Path, _ := writeKey(t, "PRIVATE KEY", der, &p384.PublicKey)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	secret, _ := encrypted.Encrypt(ecDER, []byte("right"))
	encPath, _ := writeKey(t, "ENCRYPTED SIGSTORE PRIVATE KEY", secret, &ec.PublicKey)
	notPEM := filepath.Join(t.TempDir(), "key")
	_ = os.WriteFile(notPEM, []byte("hello"), 0o600)
	for _, tc := range []struct {
		path, password, says string
	}{
		{p384Path, "", "only P-256"},
		{encPath, "", "COSIGN_PASSWORD"},
		{encPath, "wrong", "cannot decrypt"},
		{notPEM, "", "not PEM"},
		{filepath.Join(t.TempDir(), "missing"), "", "no such file"},
	} {
		_, err := sign.LoadSigner(tc.path, []byte(tc.password))
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("LoadSigner(%s) = %v, want an error saying %q", filepath.Base(tc.path), err, tc.says)
		}
	}
}

// TestSignaturesAreReproducible: the same key signs the same payload to
// the same bytes (RFC 6979 for ECDSA; Ed25519 is so by design), so a
// rebuilt image's signature artifact has the same digest.
func TestSignaturesAreReproducible(t *testing.T) {
	t.Parallel()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s, err := sign.NewSigner(ec)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := s.Sign(context.Background(), []byte("payload"))
	b, _ := s.Sign(context.Background(), []byte("payload"))
	if string(a) != string(b) {
		t.Fatal("two signatures of one payload differ")
	}
}
