package sign_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/digestline/digestline/pkg/sign"
	"github.com/opencontainers/go-digest"
)

func TestStatementsAreSignedAndProvenAboutTheirSubject(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s, _ := sign.NewSigner(k)
	v, _ := sign.NewVerifier(&k.PublicKey)
	o, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := sign.NewVerifier(&o.PublicKey)
	image := digest.FromString("image")
	st, err := sign.NewStatement("registry.example/team/app", image, "https://slsa.dev/provenance/v1", map[string]string{"buildType": "test"})
	if err != nil {
		t.Fatal(err)
	}
	env, err := sign.SignStatement(ctx, s, st)
	if err != nil {
		t.Fatal(err)
	}
	got, keyID, err := sign.VerifyStatement(ctx, env, image, []sign.Verifier{other, v})
	if err != nil || keyID != v.KeyID() || got.PredicateType != st.PredicateType {
		t.Fatalf("verify: %v, key %s, %+v", err, keyID, got)
	}
	if _, _, err := sign.VerifyStatement(ctx, env, image, []sign.Verifier{other}); !errors.Is(err, sign.ErrBadSignature) {
		t.Fatalf("another key: %v", err)
	}
	if _, _, err := sign.VerifyStatement(ctx, env, digest.FromString("another image"), []sign.Verifier{v}); !errors.Is(err, sign.ErrWrongSubject) {
		t.Fatalf("another subject: %v", err)
	}
	tampered := *env
	tampered.Payload = env.Payload[:len(env.Payload)-4] + "AAAA"
	if _, _, err := sign.VerifyStatement(ctx, &tampered, image, []sign.Verifier{v}); !errors.Is(err, sign.ErrBadSignature) {
		t.Fatalf("tampered payload: %v", err)
	}
}
