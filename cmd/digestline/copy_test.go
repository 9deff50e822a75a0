package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/digestline/digestline/pkg/registry/registrytest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// artifactTypes is discover's tree as sorted lines of depth and artifact
// type and digest: what two registries must answer alike.
func artifactTypes(t *testing.T, ref string) []string {
	t.Helper()
	var tree node
	if err := json.Unmarshal([]byte(cli(t, "discover", ref, "--json")), &tree); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(n node, depth int)
	walk = func(n node, depth int) {
		for _, c := range n.Children {
			out = append(out, strings.Repeat(" ", depth)+c.ArtifactType+" "+c.Digest.String())
			walk(c, depth+1)
		}
	}
	walk(tree, 0)
	slices.Sort(out)
	return out
}

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
	a := embeddedRegistry(t) + "/team/app"
	layout := filepath.Join(t.TempDir(), "layout")
	out := cli(t, "build", sourceDir(t, "copied"), "-o", layout, "--sbom", "--sign-key", filepath.Join(keys, "digestline.key"), "--name", a)
	digest := strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	cli(t, "push", layout, a+":dev")
	sbom := ""
	for _, line := range artifactTypes(t, a+"@"+digest) {
		if strings.HasPrefix(line, "application/spdx+json ") {
			sbom = strings.Fields(line)[1]
		}
	}
	note := filepath.Join(t.TempDir(), "review.json")
	if err := os.WriteFile(note, []byte(`{"reviewed": true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cli(t, "attach", a+"@"+sbom, note, "--artifact-type", "application/vnd.example.review.v1+json")
	atSource := artifactTypes(t, a+"@"+digest)
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
	if atDestination := artifactTypes(t, b+"/prod/app@"+digest); !slices.Equal(atDestination, atSource) {
		t.Fatalf("referrers at the destination:\n%v\nat the source:\n%v", atDestination, atSource)
	}
	if out, err := cosign(t, keys, "verify", "--key", "digestline.pub", "--insecure-ignore-tlog=true", "--experimental-oci11",
		"--allow-http-registry", "--trusted-root", emptyTrustedRoot(t), b+"/prod/app@"+digest); err != nil {
		t.Fatalf("cosign verify at the destination: %v\n%s", err, out)
	}
	var oras struct {
		Referrers []struct {
			ArtifactType string `json:"artifactType"`
		} `json:"referrers"`
	}
	if err := json.Unmarshal([]byte(runTool(t, "oras", "discover", "--plain-http", "--format", "json", "--depth", "1", b+"/prod/app@"+digest)), &oras); err != nil || len(oras.Referrers) != 4 {
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
	if tagExists(t, c, "prod/app", "prod") {
		t.Fatal("the tag exists after a failed proof")
	}
}

// TestCopyKeepsCosignsLegacyTags: what cosign keeps under an image's
// sha256-<hex>.sig tag (its default layout, for registries without the
// referrers API) is copied with the image and tagged so at the
// destination, where cosign verifies it.
func TestCopyKeepsCosignsLegacyTags(t *testing.T) {
	keys := t.TempDir()
	if out, err := cosign(t, keys, "generate-key-pair"); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	a := embeddedRegistry(t) + "/team/legacy"
	layout := filepath.Join(t.TempDir(), "layout")
	digest := strings.TrimSpace(strings.SplitN(cli(t, "build", sourceDir(t, "signed the old way"), "-o", layout, "--sign-key", ""), "\n", 2)[0])
	cli(t, "push", layout, a+":1")
	if out, err := cosign(t, keys, "sign", "--key", "cosign.key", "--tlog-upload=false", "--allow-http-registry", "--allow-insecure-registry", "--yes", a+"@"+digest); err != nil {
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
	if !tagExists(t, b, "prod/legacy", sigTag) {
		t.Fatalf("%s is not at the destination", sigTag)
	}
	verify := func(ref string) (string, error) {
		return cosign(t, keys, "verify", "--key", "cosign.pub", "--insecure-ignore-tlog=true", "--allow-http-registry", "--trusted-root", emptyTrustedRoot(t), ref)
	}
	if out, err := verify(b + "/prod/legacy@" + digest); err != nil {
		t.Fatalf("cosign verify at the destination: %v\n%s", err, out)
	}
	if out := cli(t, "copy", a+"@"+digest, b+"/prod/legacy:prod"); !strings.Contains(out, "0 uploaded") {
		t.Fatalf("a second copy:\n%s", out)
	}
}

// tagExists asks the registry at host whether repo:tag exists.
func tagExists(t *testing.T, host, repo, tag string) bool {
	t.Helper()
	req, err := http.NewRequest(http.MethodHead, "http://"+host+"/v2/"+repo+"/manifests/"+tag, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", v1.MediaTypeImageManifest+", "+v1.MediaTypeImageIndex)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
