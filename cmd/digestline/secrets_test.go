package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/digestline/digestline/cmd/digestline/internal/dev"
	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
)

// TestNoSecretReachesALogAnEventOrASpan runs a whole pipeline — a signed
// build, an authenticated push, verification, promotion through the
// token-guarded API with a signed verification summary — with debug
// logging, and looks for the registry password, the API token, the signing
// key's password and the private key itself (its PEM, its scalar) in every
// log line, every event of the run and every span attribute.
func TestNoSecretReachesALogAnEventOrASpan(t *testing.T) {
	const password, token, keyPassword = "registry-pa55word-do-not-leak", "api-token-do-not-leak-0123456789", "key-pa55word-do-not-leak"
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	sealed, err := encrypted.Encrypt(der, []byte(keyPassword))
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "cosign.key")
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED SIGSTORE PRIVATE KEY", Bytes: sealed})
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := sign.LoadSigner(keyFile, []byte(keyPassword))
	if err != nil {
		t.Fatal(err)
	}
	own, _ := sign.NewVerifier(signer.Public())
	scalar := ecKey.D.Bytes()
	secrets := []string{password, token, keyPassword, base64.StdEncoding.EncodeToString(der)[:40], hex.EncodeToString(scalar),
		base64.StdEncoding.EncodeToString(scalar), strings.Split(string(keyPEM), "\n")[1]}
	t.Setenv("DIGESTLINE_API_TOKEN", token)
	requireAuth := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != "ci" || p != password {
				w.Header().Set("WWW-Authenticate", `Basic realm="digestline-test"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	var logs bustest.LogBuffer
	client := registry.New(registry.WithAuth(&authn.Basic{Username: "ci", Password: password}))
	s, _ := e2etest.StartStack(t, e2etest.WithRegistryWrapper(requireAuth), e2etest.WithRegistryClient(client), func(c *dev.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.Reporter.Tokens = map[string]string{"ci": token}
		c.Signer, c.TrustedKeys = signer, []sign.Verifier{own}
		c.Reporter.Signer, c.Reporter.Keys = signer, []sign.Verifier{own}
	})
	res, out, err := s.Ship(t, e2etest.SourceDir(t, "secrets"), "team/secret:1")
	if err != nil {
		t.Fatalf("ship: %v\n%s", err, out)
	}
	if out, err := promoteCLI(t, s, res.Promotion.Repository+"@"+res.Promotion.Digest, "staging"); err != nil {
		t.Fatalf("promote: %v\n%s", err, out)
	}

	var seen strings.Builder
	seen.WriteString(logs.String())
	seen.WriteString(out)
	for _, ev := range s.RunEvents(t, res.RunID) {
		b, _ := json.Marshal(ev)
		seen.Write(b)
	}
	for _, sp := range s.Spans.Ended() {
		seen.WriteString(sp.Name())
		for _, a := range sp.Attributes() {
			seen.WriteString(a.Value.Emit())
		}
		for _, e := range sp.Events() {
			for _, a := range e.Attributes {
				seen.WriteString(a.Value.Emit())
			}
		}
		seen.WriteString(sp.Status().Description)
	}
	var hist api.Page[api.HistoryEntry]
	s.GetJSON(t, "/v1/history", &hist)
	b, _ := json.Marshal(hist)
	seen.Write(b)
	if logs.String() == "" || len(s.Spans.Ended()) == 0 {
		t.Fatal("nothing was captured: the test proves nothing")
	}
	if !strings.Contains(seen.String(), own.KeyID()) {
		t.Fatal("the signing key's id is nowhere: the build was not signed, and the test proves nothing about the key")
	}
	for _, secret := range secrets {
		if strings.Contains(seen.String(), secret) {
			t.Errorf("%q leaked into logs, events, spans or records", secret)
		}
	}
}
