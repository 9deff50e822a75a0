package systemtest

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/policy"
	"github.com/digestline/digestline/pkg/registry/registrytest"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/digestline/digestline/services/reporter"
	"go.opentelemetry.io/otel/codes"
)

// TestPromotionAcrossRegistries: dev and staging live where builds are
// pushed (the embedded registry, with the referrers API), prod in another
// registry (docker-registry, without it: the fallback tag). Promoting to
// prod copies the digest there with everything attached to it and proves
// it before the tag moves: a registry that corrupts a blob during the copy
// fails the promotion at its verify stage, and nothing is tagged. Once it
// serves what it stores, the promotion completes; the record names both
// places and the one digest; oras and cosign find in prod what they find
// in dev, with prod's own verification summary besides.
func TestPromotionAcrossRegistries(t *testing.T) {
	t.Setenv("DIGESTLINE_API_TOKEN", aliceToken)
	keys := t.TempDir()
	b := registrytest.Distribution(t, registrytest.DockerRegistry)
	prodHost, corrupting := registrytest.CorruptingProxy(t, b)
	places, err := policy.ParsePlaces("prod=" + prodHost + "/prod/{path}")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := e2etest.StartStack(t, e2etest.WithSigningKey(t, keys), e2etest.WithReporter(func(c *reporter.Config) {
		c.Tokens, c.Places = map[string]string{"alice": aliceToken}, places
	}))
	repo := s.RegistryAddr + "/team/app"
	digest := s.ShipWith(t, "across registries", "team/app", true)
	if out, err := promoteCLI(t, s, repo+"@"+digest, "staging"); err != nil {
		t.Fatalf("promote to staging: %v\n%s", err, out)
	}

	// The copy lands, but prod's registry serves a corrupted blob: the
	// proof fails before the tag moves.
	corrupting.Store(true)
	out, err := promoteCLI(t, s, repo+"@"+digest, "prod")
	if err == nil || !strings.Contains(out, "[STAGE] verify FAILED") || !strings.Contains(out, "integrity") {
		t.Fatalf("a promotion to a registry that corrupts a blob: %v\n%s", err, out)
	}
	if e2etest.TagExists(t, b, "prod/team/app", "prod") || s.Current(t, "prod", repo) != "" {
		t.Fatal("prod is tagged or recorded after a failed proof")
	}
	// One trace shows where it stopped: the verify stage's span, failed,
	// with its class and hint.
	failed := false
	for _, sp := range s.Spans.Ended() {
		if sp.Name() == "push "+events.StageVerify && sp.Status().Code == codes.Error {
			for _, kv := range sp.Attributes() {
				if kv.Key == "error.type" && kv.Value.AsString() == string(failure.Integrity) {
					failed = true
				}
			}
		}
	}
	if !failed {
		t.Fatal("no failed verify stage span with error.type integrity")
	}

	corrupting.Store(false)
	out, err = promoteCLI(t, s, repo+"@"+digest, "prod")
	if err != nil {
		t.Fatalf("promote to prod: %v\n%s", err, out)
	}
	prod := prodHost + "/prod/team/app"
	for _, want := range []string{"[STAGE] referrers OK", "[STAGE] verify OK", "proven at " + prod, "[STAGE] tag update OK",
		"promoted prod " + prod + "@" + digest, "copied from " + repo + "@" + digest} {
		if !strings.Contains(out, want) {
			t.Errorf("promote printed no %q:\n%s", want, out)
		}
	}
	var recs api.Page[events.Promotion]
	if s.GetJSON(t, "/v1/promotions?env=prod&repo="+repo, &recs) != http.StatusOK || len(recs.Items) != 1 {
		t.Fatalf("prod's records: %+v", recs.Items)
	}
	if r := recs.Items[0]; r.Digest != digest || r.Location != prod || r.Source != repo || r.Ref() != prod+"@"+digest {
		t.Fatalf("prod's record: %+v", r)
	}
	if !e2etest.TagExists(t, b, "prod/team/app", "prod") {
		t.Fatal("prod's tag is not in prod's registry")
	}

	// Everything attached in dev is attached in prod, and prod has its own
	// verification summary besides.
	atSource, atProd := e2etest.ArtifactTypes(t, cli(t, "discover", repo+"@"+digest, "--json")), e2etest.ArtifactTypes(t, cli(t, "discover", b+"/prod/team/app@"+digest, "--json"))
	var extra []string
	for _, line := range atProd {
		if !slices.Contains(atSource, line) {
			extra = append(extra, line)
		}
	}
	if len(atSource) < 6 || len(atProd) != len(atSource)+1 || len(extra) != 1 || !strings.HasPrefix(extra[0], sign.MediaTypeBundle) {
		t.Fatalf("referrers in prod:\n%s\nin dev:\n%s", strings.Join(atProd, "\n"), strings.Join(atSource, "\n"))
	}
	var oras struct {
		Referrers []struct{} `json:"referrers"`
	}
	mustJSON(t, e2etest.RunTool(t, "oras", "discover", "--plain-http", "--format", "json", "--depth", "1", b+"/prod/team/app@"+digest), &oras)
	var orasDev struct {
		Referrers []struct{} `json:"referrers"`
	}
	mustJSON(t, e2etest.RunTool(t, "oras", "discover", "--plain-http", "--format", "json", "--depth", "1", repo+"@"+digest), &orasDev)
	if len(oras.Referrers) != len(orasDev.Referrers)+1 {
		t.Fatalf("oras discover: %d referrers in prod, %d in dev", len(oras.Referrers), len(orasDev.Referrers))
	}
	for _, at := range []string{repo, b + "/prod/team/app"} {
		if out, err := e2etest.Cosign(t, keys, "verify", "--key", "digestline.pub", "--insecure-ignore-tlog=true", "--experimental-oci11",
			"--allow-http-registry", "--trusted-root", e2etest.EmptyTrustedRoot(t), at+"@"+digest); err != nil {
			t.Fatalf("cosign verify in %s: %v\n%s", at, err, out)
		}
	}
}

func mustJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("%v: %s", err, s)
	}
}
