package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/registry/registrytest"
)

// TestCosignVerifiesOurSignaturesAndWeVerifyCosigns: an image digestline
// builds with a cosign key pair (cosign generate-key-pair: an encrypted
// ECDSA P-256 key) passes `cosign verify --key`, and an image cosign signs
// passes `digestline verify --key` — on a registry with the referrers API
// (the embedded one) and on one without it (docker-registry: the fallback
// tag). A signature by another key fails both ways. Our SLSA provenance
// passes `cosign verify-attestation --type slsaprovenance1`.
func TestCosignVerifiesOurSignaturesAndWeVerifyCosigns(t *testing.T) {
	keys := t.TempDir()
	if out, err := e2etest.Cosign(t, keys, "generate-key-pair"); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	other := t.TempDir()
	if out, err := e2etest.Cosign(t, other, "generate-key-pair"); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	t.Setenv("COSIGN_PASSWORD", "test-password")
	verifyFlags := []string{"--insecure-ignore-tlog=true", "--experimental-oci11", "--allow-http-registry", "--allow-insecure-registry",
		"--trusted-root", e2etest.EmptyTrustedRoot(t)}
	for regName, host := range map[string]string{
		"embedded (referrers API)":       e2etest.EmbeddedRegistry(t),
		"docker-registry (fallback tag)": registrytest.Distribution(t, registrytest.DockerRegistry),
	} {
		t.Run(regName, func(t *testing.T) {
			repo := host + "/team/signed"
			layout := filepath.Join(t.TempDir(), "layout")
			out := cli(t, "build", e2etest.SourceDir(t, "signed by digestline"), "-o", layout, "--sign-key", filepath.Join(keys, "cosign.key"), "--name", repo)
			ours := repo + "@" + strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
			cli(t, "push", layout, repo+":1")
			if out, err := e2etest.Cosign(t, keys, append([]string{"verify", "--key", "cosign.pub"}, append(verifyFlags, ours)...)...); err != nil || !strings.Contains(out, "The signatures were verified against the specified public key") {
				t.Fatalf("cosign verify of digestline's signature: %v\n%s", err, out)
			}
			if out, err := e2etest.Cosign(t, other, append([]string{"verify", "--key", "cosign.pub"}, append(verifyFlags, ours)...)...); err == nil {
				t.Fatalf("cosign verify passed with another key:\n%s", out)
			}
			if out := cli(t, "verify", ours, "--key", filepath.Join(keys, "cosign.pub")); !strings.Contains(out, "signature") || !strings.Contains(out, "attestation https://slsa.dev/provenance/v1") {
				t.Fatalf("digestline verify of its own signature and provenance:\n%s", out)
			}
			// The provenance: a sigstore bundle cosign reads offline given a
			// trusted root with nothing in it (the key is the trust).
			if out, err := e2etest.Cosign(t, keys, "verify-attestation", "--key", "cosign.pub", "--type", "slsaprovenance1", "--new-bundle-format",
				"--trusted-root", e2etest.EmptyTrustedRoot(t), "--insecure-ignore-tlog=true", "--allow-http-registry", "--allow-insecure-registry", ours); err != nil ||
				!strings.Contains(out, "The signatures were verified against the specified public key") {
				t.Fatalf("cosign verify-attestation of digestline's provenance: %v\n%s", err, out)
			}

			// cosign signs an image digestline pushed unsigned.
			unsigned := filepath.Join(t.TempDir(), "layout")
			out = cli(t, "build", e2etest.SourceDir(t, "signed by cosign"), "-o", unsigned, "--sign-key", "")
			theirs := repo + "@" + strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
			cli(t, "push", unsigned, repo+":2")
			if out, err := e2etest.Cosign(t, keys, "sign", "--key", "cosign.key", "--tlog-upload=false", "--registry-referrers-mode=oci-1-1",
				"--allow-http-registry", "--allow-insecure-registry", "--yes", theirs); err != nil {
				t.Fatalf("cosign sign: %v\n%s", err, out)
			}
			if out := cli(t, "verify", theirs, "--key", filepath.Join(keys, "cosign.pub")); !strings.Contains(out, "valid") {
				t.Fatalf("digestline verify of cosign's signature:\n%s", out)
			}
			if _, err := cliErr(t, "verify", theirs, "--key", filepath.Join(other, "cosign.pub")); err == nil {
				t.Fatal("digestline verify passed cosign's signature with another key")
			}
		})
	}
}

// TestCosignVerifiesAnEd25519Signature: a key from digestline keygen
// --ed25519 signs what cosign verifies.
func TestCosignVerifiesAnEd25519Signature(t *testing.T) {
	keys := t.TempDir()
	cli(t, "keygen", "--out", keys, "--ed25519")
	repo := e2etest.EmbeddedRegistry(t) + "/team/ed25519"
	layout := filepath.Join(t.TempDir(), "layout")
	out := cli(t, "build", e2etest.SourceDir(t, "ed25519"), "-o", layout, "--sign-key", filepath.Join(keys, "digestline.key"), "--name", repo)
	image := repo + "@" + strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	cli(t, "push", layout, repo+":1")
	if out, err := e2etest.Cosign(t, keys, "verify", "--key", "digestline.pub", "--insecure-ignore-tlog=true", "--experimental-oci11",
		"--allow-http-registry", "--trusted-root", e2etest.EmptyTrustedRoot(t), image); err != nil || !strings.Contains(out, "verified against the specified public key") {
		t.Fatalf("cosign verify of an Ed25519 signature: %v\n%s", err, out)
	}
}
