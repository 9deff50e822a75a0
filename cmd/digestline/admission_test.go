package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/evidence"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/digestline/digestline/services/reporter"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
)

// TestAdmitsAnImageAnotherToolPushed: an image crane built and pushed,
// signed and attested by the real cosign in its default (legacy, tagged)
// layout, is admitted by `digestline admit --key` with no digestline
// build: its bytes, its signature and its provenance (builder and source)
// proven with the key the caller trusts, then promoted to dev with
// digestline's own verification summary attached, and on to staging,
// proven again with the same key. An unsigned image, one signed by
// another key, and one whose provenance names another source are each
// rejected, saying what was expected.
func TestAdmitsAnImageAnotherToolPushed(t *testing.T) {
	t.Setenv("DIGESTLINE_API_TOKEN", "")
	ci, other, own := t.TempDir(), t.TempDir(), t.TempDir()
	for _, dir := range []string{ci, other} {
		if out, err := e2etest.Cosign(t, dir, "generate-key-pair"); err != nil {
			t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
		}
	}
	s, _ := e2etest.StartStack(t, e2etest.WithSigningKey(t, own))
	token := []string{"--api", s.APIURL, "--token-file", s.TokenFile, "--timeout", "1m"}
	pushed := func(tag, content string) string { // crane builds and pushes it: digestline never sees it
		t.Helper()
		layer := filepath.Join(t.TempDir(), "layer.tar")
		if err := os.WriteFile(layer, tarOf(t, "app/version", content), 0o644); err != nil {
			t.Fatal(err)
		}
		ref := s.RegistryAddr + "/team/foreign:" + tag
		e2etest.RunTool(t, "crane", "append", "--insecure", "--oci-empty-base", "-f", layer, "-t", ref)
		return strings.TrimSpace(e2etest.RunTool(t, "crane", "digest", "--insecure", ref))
	}
	cosign := func(dir string, args ...string) {
		t.Helper()
		args = append(args, "--key", "cosign.key", "--tlog-upload=false", "--allow-insecure-registry", "--allow-http-registry", "--yes")
		if out, err := e2etest.Cosign(t, dir, args...); err != nil {
			t.Fatalf("cosign %v: %v\n%s", args, err, out)
		}
	}
	predicate := filepath.Join(t.TempDir(), "provenance.json")
	if err := os.WriteFile(predicate, []byte(`{"buildDefinition": {"buildType": "https://ci.acme.example/docker-build/v1",
		"externalParameters": {"repository": "https://github.com/acme/app", "ref": "refs/heads/main"},
		"resolvedDependencies": [{"uri": "git+https://github.com/acme/app@refs/heads/main", "digest": {"gitCommit": "0123456789abcdef0123456789abcdef01234567"}}]},
		"runDetails": {"builder": {"id": "https://ci.acme.example/builder"}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	repo := s.RegistryAddr + "/team/foreign"
	trusted := []string{"--key", filepath.Join(ci, "cosign.pub")}

	signed := pushed("1.0", "signed by ci")
	cosign(ci, "sign", repo+"@"+signed)
	cosign(ci, "attest", "--type", "slsaprovenance1", "--predicate", predicate, repo+"@"+signed)
	out := cli(t, append(append([]string{"admit", repo + ":1.0", "--builder", "https://ci.acme.example/builder", "--source", "https://github.com/acme/app"}, trusted...), token...)...)
	for _, want := range []string{"[ADMIT] " + repo + ":1.0@" + signed, "[VERIFY] signature", "[VERIFY] provenance", "builder https://ci.acme.example/builder", "promoted dev"} {
		if !strings.Contains(out, want) {
			t.Errorf("admit's output lacks %q:\n%s", want, out)
		}
	}
	var rec api.PromotionRecord
	if s.GetJSON(t, "/v1/promotions/dev/"+repo, &rec) != http.StatusOK || rec.Current == nil || rec.Current.Digest != signed {
		t.Fatalf("dev's record of %s: %+v, want %s", repo, rec.Current, signed)
	}
	if got := tagDigest(t, s, "team/foreign", "dev"); got != signed {
		t.Errorf("team/foreign:dev points at %s, want %s", got, signed)
	}
	summaries := verificationSummaries(t, repo, signed, filepath.Join(own, "digestline.pub"))
	// It names what admitted the image: cosign's signature and provenance.
	if v, ok := summaries["dev"]; !ok || v.VerificationResult != "PASSED" || len(v.InputAttestations) != 2 {
		t.Errorf("digestline's verification summaries of the admitted image: %+v", summaries)
	}
	// On to staging: the promotion's verification proves it with the
	// admission's key, not only the stack's own (which did not sign it).
	if out, err := promoteCLI(t, s, repo+"@"+signed, "staging", "--token-file", s.TokenFile); err != nil || !strings.Contains(out, "[VERIFY] signature") {
		t.Fatalf("promote the admitted image to staging: %v\n%s", err, out)
	}

	for _, c := range []struct {
		name, tag  string
		prepare    func(d string)
		args, want []string
	}{
		{"unsigned", "2.0", func(string) {}, nil, []string{"has no signature by a trusted key (key sha256:", "verify.failed", "cosign sign --key cosign.key " + repo + "@sha256:"}},
		{"signed by another key", "3.0", func(d string) { cosign(other, "sign", repo+"@"+d) }, nil,
			[]string{"not a trusted key's over this image", "referrer application/vnd.dev.cosign.artifact.sig.v1+json"}},
		{"provenance from another source", "4.0", func(d string) {
			cosign(ci, "sign", repo+"@"+d)
			cosign(ci, "attest", "--type", "slsaprovenance1", "--predicate", predicate, repo+"@"+d)
		}, []string{"--source", "https://github.com/acme/other"}, []string{"no SLSA provenance from builder any and source https://github.com/acme/other", "(builder https://ci.acme.example/builder, from https://github.com/acme/app)"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := pushed(c.tag, c.name)
			c.prepare(d)
			out, err := cliErr(t, append(append(append([]string{"admit", repo + ":" + c.tag}, c.args...), trusted...), token...)...)
			if err == nil {
				t.Fatalf("admitted:\n%s", out)
			}
			for _, want := range c.want {
				if !strings.Contains(out+err.Error(), want) {
					t.Errorf("admit's refusal lacks %q:\n%s\n%v", want, out, err)
				}
			}
			if s.GetJSON(t, "/v1/promotions/dev/"+repo, &rec) != http.StatusOK || rec.Current == nil || rec.Current.Digest != signed {
				t.Errorf("dev's record moved to %+v after a refused admission", rec.Current)
			}
		})
	}

	// The API refuses what it cannot admit, and what a token does not allow.
	apiToken, err := os.ReadFile(s.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	for body, want := range map[string]int{
		`{"ref": "` + repo + `:1.0"}`:                                   http.StatusBadRequest, // no digest
		`{"ref": "` + repo + `@` + signed + `", "to": "nowhere"}`:       http.StatusBadRequest,
		`{"ref": "` + repo + `@` + signed + `", "keys": ["not a key"]}`: http.StatusBadRequest,
		`{"ref": "` + repo + `@` + signed + `", "unknown": true}`:       http.StatusBadRequest,
	} {
		if got := s.Post(t, "/v1/admissions", strings.TrimSpace(string(apiToken)), body); got != want {
			t.Errorf("POST /v1/admissions %s: %d, want %d", body, got, want)
		}
	}
	if got := s.Post(t, "/v1/admissions", "", `{"ref": "`+repo+`@`+signed+`"}`); got != http.StatusUnauthorized {
		t.Errorf("POST /v1/admissions without a token: %d", got)
	}

	// Bad requests say why, and start nothing.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"admit", repo + "@sha256:nothex"}, "nothex"},
		{[]string{"admit", repo + ":1.0", "--key", predicate}, predicate},
		{[]string{"admit", repo + ":1.0", "--source", "https://github.com/acme/app"}, "need --key"},
		{[]string{"admit", repo + ":nope"}, "no such tag (digestline tags " + repo + " lists them"},
	} {
		if out, err := cliErr(t, append(c.args, token...)...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error saying %q\n%s", c.args, err, c.want, out)
		}
	}
}

// tarOf is a layer holding one file.
func tarOf(t *testing.T, path, content string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: path, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(content)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// verificationSummaries reads the verification summaries key signed about
// repo@d, by environment.
func verificationSummaries(t *testing.T, repo, d, key string) map[string]reporter.VSA {
	t.Helper()
	verifier, err := sign.LoadVerifier(key)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.NewRepository(repo)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New().Open(context.Background(), r, false)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := evidence.Collect(context.Background(), reg, digest.Digest(d), []sign.Verifier{verifier})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]reporter.VSA{}
	for _, a := range ev.Attestations {
		if a.Statement.PredicateType == sign.PredicateSLSAVSA {
			var v reporter.VSA
			if err := json.Unmarshal(a.Statement.Predicate, &v); err != nil {
				t.Fatal(err)
			}
			out[v.Promotion.Environment] = v
		}
	}
	return out
}
