package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/registry/registrytest"
)

// TestCopyAcrossRegistriesKeepsTheEvidenceAndProvesIt: an image signed,
// attested, with its SBOMs and a signature of its SBOM, copied from a
// registry with the referrers API (the embedded one) to one without it
// (docker-registry: the fallback tag) arrives with the same digest and the
// same referrers, proven byte for byte and signature by signature before
// the tag moves; cosign verifies it there as it did at the source. A
// destination that serves a corrupted blob fails the proof, and nothing
// is tagged.
func TestCopyAcrossRegistriesKeepsTheEvidenceAndProvesIt(t *testing.T) {
	keys := t.TempDir()
	cli(t, "keygen", "--out", keys)
	pub := filepath.Join(keys, "digestline.pub")
	a := e2etest.EmbeddedRegistry(t) + "/team/app"
	layout := filepath.Join(t.TempDir(), "layout")
	out := cli(t, "build", e2etest.SourceDir(t, "copied"), "-o", layout, "--sbom", "--sign-key", filepath.Join(keys, "digestline.key"), "--name", a)
	digest := strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	cli(t, "push", layout, a+":dev")
	sbom := ""
	for _, line := range e2etest.ArtifactTypes(t, cli(t, "discover", a+"@"+digest, "--json")) {
		if strings.HasPrefix(line, "application/spdx+json ") {
			sbom = strings.Fields(line)[1]
		}
	}
	note := filepath.Join(t.TempDir(), "review.json")
	if err := os.WriteFile(note, []byte(`{"reviewed": true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cli(t, "attach", a+"@"+sbom, note, "--artifact-type", "application/vnd.example.review.v1+json")
	atSource := e2etest.ArtifactTypes(t, cli(t, "discover", a+"@"+digest, "--json"))
	if len(atSource) != 5 { // SPDX (with its review), CycloneDX, signature, provenance
		t.Fatalf("at the source: %v", atSource)
	}
	b := registrytest.Distribution(t, registrytest.DockerRegistry)
	out = cli(t, "copy", a+"@"+digest, b+"/prod/app:prod", "--key", pub)
	for _, want := range []string{"[VERIFY] digest match", "[VERIFY] signature", "[VERIFY] attestation https://slsa.dev/provenance/v1", "tag update OK prod/app:prod", "verified, tagged prod"} {
		if !strings.Contains(out, want) {
			t.Fatalf("copy printed no %q:\n%s", want, out)
		}
	}
	if atDestination := e2etest.ArtifactTypes(t, cli(t, "discover", b+"/prod/app@"+digest, "--json")); !slices.Equal(atDestination, atSource) {
		t.Fatalf("referrers at the destination:\n%v\nat the source:\n%v", atDestination, atSource)
	}
	if out, err := e2etest.Cosign(t, keys, "verify", "--key", "digestline.pub", "--insecure-ignore-tlog=true", "--experimental-oci11",
		"--allow-http-registry", "--trusted-root", e2etest.EmptyTrustedRoot(t), b+"/prod/app@"+digest); err != nil {
		t.Fatalf("cosign verify at the destination: %v\n%s", err, out)
	}
	var oras struct {
		Referrers []struct {
			ArtifactType string `json:"artifactType"`
		} `json:"referrers"`
	}
	if err := json.Unmarshal([]byte(e2etest.RunTool(t, "oras", "discover", "--plain-http", "--format", "json", "--depth", "1", b+"/prod/app@"+digest)), &oras); err != nil || len(oras.Referrers) != 4 {
		t.Fatalf("oras discover at the destination: %+v %v", oras, err)
	}
	// Copying again sends nothing.
	if out := cli(t, "copy", a+"@"+digest, b+"/prod/app:prod", "--key", pub); !strings.Contains(out, "0 uploaded") {
		t.Fatalf("a second copy:\n%s", out)
	}

	// A destination that corrupts what it serves: the proof fails, no tag.
	c := registrytest.Distribution(t, registrytest.DockerRegistry)
	corrupted, corrupting := registrytest.CorruptingProxy(t, c)
	corrupting.Store(true)
	if _, err := cliErr(t, "copy", a+"@"+digest, corrupted+"/prod/app:prod", "--key", pub); err == nil || !strings.Contains(describe(err), "nothing is tagged") {
		t.Fatalf("a copy to a corrupting registry = %v", err)
	}
	if e2etest.TagExists(t, c, "prod/app", "prod") {
		t.Fatal("the tag exists after a failed proof")
	}
}

// TestCopyKeepsCosignsLegacyTags: what cosign keeps under an image's
// sha256-<hex>.sig tag (its default layout, for registries without the
// referrers API) is copied with the image and tagged so at the
// destination, where cosign verifies it.
func TestCopyKeepsCosignsLegacyTags(t *testing.T) {
	keys := t.TempDir()
	if out, err := e2etest.Cosign(t, keys, "generate-key-pair"); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	a := e2etest.EmbeddedRegistry(t) + "/team/legacy"
	layout := filepath.Join(t.TempDir(), "layout")
	digest := strings.TrimSpace(strings.SplitN(cli(t, "build", e2etest.SourceDir(t, "signed the old way"), "-o", layout, "--sign-key", ""), "\n", 2)[0])
	cli(t, "push", layout, a+":1")
	if out, err := e2etest.Cosign(t, keys, "sign", "--key", "cosign.key", "--tlog-upload=false", "--allow-http-registry", "--allow-insecure-registry", "--yes", a+"@"+digest); err != nil {
		t.Fatalf("cosign sign: %v\n%s", err, out)
	}
	sigTag := "sha256-" + strings.TrimPrefix(digest, "sha256:") + ".sig"
	b := registrytest.Distribution(t, registrytest.DockerRegistry)
	out := cli(t, "copy", a+"@"+digest, b+"/prod/legacy:prod")
	for _, want := range []string{"1 under cosign's tags", "[VERIFY] " + sigTag, "verified, tagged prod"} {
		if !strings.Contains(out, want) {
			t.Fatalf("copy printed no %q:\n%s", want, out)
		}
	}
	if !e2etest.TagExists(t, b, "prod/legacy", sigTag) {
		t.Fatalf("%s is not at the destination", sigTag)
	}
	verify := func(ref string) (string, error) {
		return e2etest.Cosign(t, keys, "verify", "--key", "cosign.pub", "--insecure-ignore-tlog=true", "--allow-http-registry", "--trusted-root", e2etest.EmptyTrustedRoot(t), ref)
	}
	if out, err := verify(b + "/prod/legacy@" + digest); err != nil {
		t.Fatalf("cosign verify at the destination: %v\n%s", err, out)
	}
	if out := cli(t, "copy", a+"@"+digest, b+"/prod/legacy:prod"); !strings.Contains(out, "0 uploaded") {
		t.Fatalf("a second copy:\n%s", out)
	}
}
