package reporter_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/evidence"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/policy"
	"github.com/digestline/digestline/pkg/registry/registrytest"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/digestline/digestline/services/reporter"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/uuid"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// key makes a signing key and writes its public key to dir/name.pub.
func key(t *testing.T, dir, name string) (sign.Signer, string) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s, err := sign.NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	path := filepath.Join(dir, name+".pub")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return s, path
}

// provenanceFrom is a SLSA provenance predicate of a build of rev.
func provenanceFrom(rev string) map[string]any {
	return map[string]any{"buildDefinition": map[string]any{"buildType": "test",
		"externalParameters": map[string]any{"source": map[string]any{"kind": "git", "url": "https://git.example/team/app.git", "rev": rev}}}}
}

// evidenced pushes an image to repo:tag with what attach adds to it, and
// returns its digest.
func evidenced(t *testing.T, repo, tag, content string, attach func(g oci.Graph, l *oci.Layout) []oci.Graph) string {
	t.Helper()
	g, l := registrytest.Image(t, content)
	g.Referrers = attach(g, l)
	if _, err := client().Push(context.Background(), mustRef(t, repo+":"+tag), g, l, nil); err != nil {
		t.Fatal(err)
	}
	return g.Root.Digest.String()
}

// release attaches what prod's policy asks for: a signature and provenance
// from main by s, and an SBOM.
func release(t *testing.T, repo string, s sign.Signer) func(oci.Graph, *oci.Layout) []oci.Graph {
	return func(g oci.Graph, l *oci.Layout) []oci.Graph {
		ctx := context.Background()
		sig, err := sign.SignImage(ctx, s, repo, g.Root, time.Time{}, l)
		if err != nil {
			t.Fatal(err)
		}
		att, err := sign.Attest(ctx, s, repo, g.Root, sign.PredicateSLSAProvenance, provenanceFrom("refs/heads/main"), time.Time{}, l)
		if err != nil {
			t.Fatal(err)
		}
		sbom, err := oci.BuildSBOM(ctx, g, repo, time.Time{}, l)
		if err != nil {
			t.Fatal(err)
		}
		return []oci.Graph{sig, att, sbom}
	}
}

const prodPolicy = `environments:
  prod:
    keys: [%s]
    rules:
      - name: signed
        expr: signatures.size() > 0
      - name: provenance-from-main
        expr: >-
          has(provenance.buildDefinition) &&
          provenance.buildDefinition.externalParameters.source.url == "https://git.example/team/app.git" &&
          provenance.buildDefinition.externalParameters.source.rev == "refs/heads/main"
      - name: sbom
        expr: referrers.exists(r, r.artifactType == "application/spdx+json")
      - name: no-vulnerable-libc
        expr: '!packages.exists(p, p.name == "libc6" && p.version == "2.36-9+deb12u1")' 
      - name: approved
        expr: approvals.size() >= %d
      - name: soaked
        expr: soak >= duration("%s")
`

func writePolicy(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// apiCall sends a JSON request to the reporter's API with token.
func apiCall(t *testing.T, method, u, token string, body, out any) int {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, u, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

var tokens = map[string]string{"alice": "alice-token-0123456789", "bob": "bob-token-0123456789ab"}

// TestPolicyClausesNameWhatFailsAndItsValues: each way evidence can fall
// short — unsigned, signed by a key prod does not trust, a tampered
// signature, provenance about another digest, one approval of two, a soak
// not yet over — fails its own clause, shown with the values it read,
// without promoting anything (GET /v1/policy/prod).
func TestPolicyClausesNameWhatFailsAndItsValues(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	releaseKey, releasePub := key(t, dir, "release")
	devKey, _ := key(t, dir, "dev")
	pol := writePolicy(t, fmt.Sprintf(prodPolicy, releasePub, 2, "1h"))
	h := start(t, func(c *reporter.Config) {
		var err error
		if c.Policy, err = policy.Load(pol, reporter.DefaultEnvironments); err != nil {
			t.Fatal(err)
		}
		c.Tokens = tokens
	})
	ctx := context.Background()
	good := evidenced(t, h.repo, "good", "good", release(t, h.repo, releaseKey))
	wrongKey := evidenced(t, h.repo, "wrong-key", "wrong key", release(t, h.repo, devKey))
	tampered := evidenced(t, h.repo, "tampered", "tampered", func(g oci.Graph, l *oci.Layout) []oci.Graph {
		refs := release(t, h.repo, releaseKey)(g, l)
		forged, err := oci.BuildArtifact(ctx, oci.ArtifactConfig{ArtifactType: sign.ArtifactTypeCosignSignature, ConfigMediaType: sign.ArtifactTypeCosignSignature,
			Files: []oci.ArtifactFile{{Content: []byte(`{"critical":{"image":{"docker-manifest-digest":"` + g.Root.Digest.String() + `"},"type":"cosign container image signature"}}`),
				MediaType: sign.MediaTypeSimpleSigning, Annotations: map[string]string{sign.AnnotationCosignSignature: base64.StdEncoding.EncodeToString([]byte("forged"))}}},
			Subject: &g.Root}, l)
		if err != nil {
			t.Fatal(err)
		}
		return append(refs[1:], forged) // the good signature replaced by a forged one
	})
	otherSubject := evidenced(t, h.repo, "other-subject", "other subject", func(g oci.Graph, l *oci.Layout) []oci.Graph {
		refs := release(t, h.repo, releaseKey)(g, l)
		other, _ := registrytest.Image(t, "another image")
		st, _ := sign.NewStatement(h.repo, other.Root.Digest, sign.PredicateSLSAProvenance, provenanceFrom("refs/heads/main"))
		env, _ := sign.SignStatement(ctx, releaseKey, st)
		bundle, _ := json.Marshal(map[string]any{"mediaType": sign.MediaTypeBundle, "dsseEnvelope": env})
		att, err := oci.BuildArtifact(ctx, oci.ArtifactConfig{ArtifactType: sign.MediaTypeBundle,
			Files: []oci.ArtifactFile{{Content: bundle, MediaType: sign.MediaTypeBundle}}, Subject: &g.Root}, l)
		if err != nil {
			t.Fatal(err)
		}
		return []oci.Graph{refs[0], att, refs[2]} // provenance about another digest
	})
	unsigned := evidenced(t, h.repo, "unsigned", "unsigned", func(g oci.Graph, l *oci.Layout) []oci.Graph { return nil })
	vulnerable := evidenced(t, h.repo, "vulnerable", "vulnerable", func(g oci.Graph, l *oci.Layout) []oci.Graph {
		refs := release(t, h.repo, releaseKey)(g, l)
		return append(refs[:2], sbomListing(t, g, l, "libc6", "2.36-9+deb12u1")...)
	})
	clauses := func(t *testing.T, d string) map[string]policy.Clause {
		t.Helper()
		var rep api.PolicyReport
		if code := apiCall(t, http.MethodGet, h.api+"/v1/policy/prod?ref="+url.QueryEscape(h.repo+"@"+d), "", nil, &rep); code != http.StatusOK {
			t.Fatalf("dry run: %d", code)
		}
		if rep.Allowed || rep.Gate == "" {
			t.Fatalf("a digest never in staging is allowed into prod: %+v", rep)
		}
		out := map[string]policy.Clause{}
		for _, c := range rep.Clauses {
			out[c.Name] = c
		}
		return out
	}
	failing := func(cs map[string]policy.Clause) []string {
		var out []string
		for _, name := range []string{"signed", "provenance-from-main", "sbom", "no-vulnerable-libc", "approved", "soaked"} {
			if c, ok := cs[name]; !ok || !c.Passed {
				out = append(out, name)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name, digest string
		fails        string
	}{
		{"released", good, "approved soaked"},
		{"signed by a key prod does not trust", wrongKey, "signed provenance-from-main approved soaked"},
		{"a tampered signature", tampered, "signed approved soaked"},
		{"provenance about another digest", otherSubject, "provenance-from-main approved soaked"},
		{"unsigned", unsigned, "signed provenance-from-main sbom approved soaked"},
		{"a package the policy refuses", vulnerable, "no-vulnerable-libc approved soaked"},
	} {
		if got := strings.Join(failing(clauses(t, tc.digest)), " "); got != tc.fails {
			t.Errorf("%s: failing clauses %q, want %q", tc.name, got, tc.fails)
		}
	}

	// One approval of two, then two.
	ref := h.repo + "@" + good
	if code := apiCall(t, http.MethodPost, h.api+"/v1/approvals", tokens["alice"], api.ApproveRequest{Ref: ref, To: "prod"}, nil); code != http.StatusCreated {
		t.Fatalf("approve: %d", code)
	}
	approved := clauses(t, good)["approved"]
	if approved.Passed || !strings.Contains(fmt.Sprint(approved.Values["approvals"]), "alice") {
		t.Fatalf("one approval of two: %+v", approved)
	}
	for _, who := range []string{"alice", "bob"} { // alice again counts once
		apiCall(t, http.MethodPost, h.api+"/v1/approvals", tokens[who], api.ApproveRequest{Ref: ref, To: "prod"}, nil)
	}
	if c := clauses(t, good)["approved"]; !c.Passed {
		t.Fatalf("two approvals: %+v", c)
	}
	if code := apiCall(t, http.MethodPost, h.api+"/v1/approvals", "not-a-token-at-all", api.ApproveRequest{Ref: ref, To: "prod"}, nil); code != http.StatusUnauthorized {
		t.Fatalf("an approval without a valid token: %d", code)
	}
	if soaked := clauses(t, good)["soaked"]; soaked.Passed || soaked.Values["soak"] != "0s" {
		t.Fatalf("soak: %+v", soaked)
	}
}

// sbomListing builds the SBOMs of an image whose dpkg status lists one
// installed package (the image itself holds only its file: the SBOM is
// what the policy reads).
func sbomListing(t *testing.T, g oci.Graph, l *oci.Layout, name, version string) []oci.Graph {
	t.Helper()
	dir := t.TempDir()
	status := filepath.Join(dir, "var", "lib", "dpkg")
	if err := os.MkdirAll(status, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(status, "status"), []byte("Package: "+name+"\nStatus: install ok installed\nVersion: "+version+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, _ := oci.ParsePlatform("")
	img, err := oci.BuildImage(context.Background(), dir, oci.ImageConfig{Platform: p}, l)
	if err != nil {
		t.Fatal(err)
	}
	sboms, err := oci.BuildSBOMs(context.Background(), img, "app", time.Time{}, l)
	if err != nil {
		t.Fatal(err)
	}
	// Listed as the SBOMs of g: the same documents, attached to it.
	for i := range sboms {
		var m v1.Manifest
		body, _ := oci.ReadManifest(context.Background(), l, sboms[i].Root)
		_ = json.Unmarshal(body, &m)
		sub := g.Root
		sboms[i], err = oci.BuildArtifact(context.Background(), oci.ArtifactConfig{ArtifactType: m.ArtifactType,
			Files: []oci.ArtifactFile{{Content: readBlob(t, l, m.Layers[0]), MediaType: m.Layers[0].MediaType}}, Subject: &sub}, l)
		if err != nil {
			t.Fatal(err)
		}
	}
	return sboms
}

func readBlob(t *testing.T, l *oci.Layout, d v1.Descriptor) []byte {
	t.Helper()
	rc, err := l.Open(context.Background(), d.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestABadPolicyIsAClearErrorAtStart: a rule that does not compile, or is
// not a bool, names the file and line; an unknown field and an environment
// outside the chain are errors too.
func TestABadPolicyIsAClearErrorAtStart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ body, says string }{
		{"environments:\n  prod:\n    rules:\n      - name: broken\n        expr: signatures.size() >\n", "policy.yaml:5"},
		{"environments:\n  prod:\n    rules:\n      - name: not-a-bool\n        expr: signatures.size()\n", "want a bool"},
		{"environments:\n  prod:\n    rules:\n      - name: typo\n        expr: signaturez.size() > 0\n", "undeclared reference to 'signaturez'"},
		{"environments:\n  qa:\n    rules: []\n", "not in the promotion chain"},
		{"environments:\n  prod:\n    rulez: []\n", "field rulez not found"},
	} {
		_, err := policy.Load(writePolicy(t, tc.body), reporter.DefaultEnvironments)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("LoadPolicy(%q) = %v, want an error saying %q", tc.body, err, tc.says)
		}
	}
}

// TestAPolicyReadsWhatItsRulesName: what a rule reads is what the type
// checker resolves to a variable, not any word in its text, so the gate
// gathers no evidence (registry requests, the approvals' listing on the
// bus) that no rule needs.
func TestAPolicyReadsWhatItsRulesName(t *testing.T) {
	t.Parallel()
	pol, err := policy.Load(writePolicy(t, `environments:
  staging:
    rules:
      - name: word-in-a-string
        expr: '!signatures.exists(s, s.key == "approvals")'
      - name: attached
        expr: referrers.exists(r, r.artifactType != "")
  prod:
    rules:
      - name: approved
        expr: approvals.size() >= 1 && now > timestamp("2026-01-01T00:00:00Z")
`), reporter.DefaultEnvironments)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  string
		want []string
	}{
		{"dev", nil},
		{"staging", []string{"signatures", "referrers"}},
		{"prod", []string{"approvals", "now"}},
	} {
		var got []string
		for _, v := range []string{"environment", "repository", "digest", "requested_by", "signatures", "attestations",
			"provenance", "referrers", "packages", "approvals", "soak", "now"} {
			if pol.Reads(tc.env, v) {
				got = append(got, v)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s reads %v, want %v", tc.env, got, tc.want)
		}
	}
}

// TestPromotionChainUnderAPolicy: dev → staging → prod, where prod wants a
// signature by the release key, provenance from main, an SBOM and one
// approval. The first request to prod is rejected naming the approval
// clause; after an approval the same digest is promoted.
func TestPromotionChainUnderAPolicy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	releaseKey, releasePub := key(t, dir, "release")
	pol := writePolicy(t, fmt.Sprintf(prodPolicy, releasePub, 1, "0s"))
	h := start(t, func(c *reporter.Config) {
		var err error
		if c.Policy, err = policy.Load(pol, reporter.DefaultEnvironments); err != nil {
			t.Fatal(err)
		}
		c.Tokens = tokens
		c.Signer = releaseKey // the reporter signs its verification summaries
	})
	d := evidenced(t, h.repo, "1", "released", release(t, h.repo, releaseKey))
	promote := func(t *testing.T, run string) []bustest.Event {
		t.Helper()
		evs := h.srv.WaitRun(t, run, events.PromotionRejected, events.PromotionApproved)
		if bustest.Count(evs, events.PromotionApproved) == 0 {
			return evs
		}
		h.moveAndReverify(t, run, evs)
		return h.srv.WaitRun(t, run, events.Promoted)
	}
	request := func(to string) string {
		run := uuid.NewString()
		if _, err := h.bus.Start(context.Background(), events.PromotionRequested, run, "app", events.PromotionRequest{Repository: h.repo, Digest: d, To: to, RequestedBy: "alice"}); err != nil {
			t.Fatal(err)
		}
		return run
	}
	promote(t, h.verified(t, "1", d, "dev"))
	if evs := promote(t, request("staging")); bustest.Count(evs, events.Promoted) != 1 {
		t.Fatal("not promoted to staging")
	}
	evs := promote(t, request("prod"))
	rej := bustest.Last[events.Rejection](t, evs, events.PromotionRejected)
	if rej.Gate != reporter.GatePolicy+"approved" || !strings.Contains(rej.Reason, "approvals.size() >= 1") || rej.Hint == "" {
		t.Fatalf("rejection %+v, want the approval clause with its expression", rej)
	}
	if code := apiCall(t, http.MethodPost, h.api+"/v1/approvals", tokens["bob"], api.ApproveRequest{Ref: h.repo + "@" + d, To: "prod"}, nil); code != http.StatusCreated {
		t.Fatalf("approve: %d", code)
	}
	prodRun := request("prod")
	evs = promote(t, prodRun)
	if p := bustest.Last[events.Promotion](t, evs, events.Promoted); p.Environment != "prod" || p.Digest != d {
		t.Fatalf("promoted %+v", p)
	}
	// The run's last step again, as a redelivery brings it once the
	// summary was pushed: the same summary, not a second one that lists
	// the first among its inputs or the same inputs in another order.
	redeliverLastStep(t, h, prodRun, evs)

	// Each promotion left a verification summary the release key signed;
	// prod's names the policy file and the evidence it admitted: the
	// signature, the provenance, and the summaries of dev and staging.
	verifier, err := sign.LoadVerifier(releasePub)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := client().Open(context.Background(), mustRepo(t, h.repo), false)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := evidence.Collect(context.Background(), reg, digest.Digest(d), []sign.Verifier{verifier})
	if err != nil || len(ev.Problems) != 0 {
		t.Fatalf("evidence: %v %+v", err, ev.Problems)
	}
	summaries := map[string]reporter.VSA{}
	for _, a := range ev.Attestations {
		if a.Statement.PredicateType == sign.PredicateSLSAVSA {
			var v reporter.VSA
			if err := json.Unmarshal(a.Statement.Predicate, &v); err != nil {
				t.Fatal(err)
			}
			summaries[v.Promotion.Environment] = v
		}
	}
	prod, ok := summaries["prod"]
	if n := len(ev.Attestations) - 1; n != 3 { // but the provenance
		t.Errorf("%d verification summaries for 3 promotions", n)
	}
	if len(summaries) != 3 || !ok || prod.VerificationResult != "PASSED" || prod.Policy.Digest["sha256"] == "" || len(prod.InputAttestations) != 4 {
		t.Fatalf("verification summaries %+v; prod %+v", summaries, prod)
	}
}

// redeliverLastStep hands the reporter the verify.completed that ended
// run's promotion (its tag moved, the digest verified again) once more,
// under another event id, and waits for its second promoted.
func redeliverLastStep(t *testing.T, h *harness, run string, evs []bustest.Event) {
	t.Helper()
	h.reverified(t, evs, "again")
	for deadline := time.Now().Add(30 * time.Second); bustest.Count(h.srv.WaitRun(t, run, events.Promoted), events.Promoted) < 2; {
		if time.Now().After(deadline) {
			t.Fatal("the redelivered step was not promoted again")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
