package systemtest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/cmd/digestline/internal/ship"
	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/digestline/digestline/services/reporter"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/opencontainers/go-digest"
)

const (
	aliceToken = "alice-token-0123456789abcdef"
	sbomType   = "application/spdx+json"
)

// moveTag points repo:tag at dgst behind the pipeline's back.
func moveTag(t *testing.T, repo, tag, dgst string) {
	t.Helper()
	d, err := name.NewDigest(repo + "@" + dgst)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(d)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Tag(d.Context().Tag(tag), desc); err != nil {
		t.Fatal(err)
	}
}

// TestPromotionChainThroughEveryGate walks digests through dev → staging →
// prod while each gate rejects once, then rolls prod back.
func TestPromotionChainThroughEveryGate(t *testing.T) {
	t.Setenv("DIGESTLINE_API_TOKEN", aliceToken)
	s, _ := e2etest.StartStack(t, e2etest.WithReporter(func(c *reporter.Config) {
		c.Tokens = map[string]string{"alice": aliceToken}
		c.RequiredReferrers = map[string][]string{"prod": {sbomType}}
	}))
	repo := s.RegistryAddr + "/team/chain"
	rejected := func(out string, err error, gate string) {
		t.Helper()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(err.Error(), "rejected by gate "+gate+":") {
			t.Fatalf("want a rejection by gate %s, got %v\n%s", gate, err, out)
		}
	}
	promoted := func(out string, err error, env, dgst string) {
		t.Helper()
		if err != nil || !strings.Contains(out, "promoted "+env+" "+repo+"@"+dgst) || !strings.Contains(out, "[VERIFY] digest match") {
			t.Fatalf("promote %s to %s: %v\n%s", dgst, env, err, out)
		}
	}

	// Gate "environment": a build run asking for an environment outside the chain.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, env := range []string{"qa", "not even a name!"} {
		_, err := ship.Ship(ctx, s.Bus, ship.Request{Dir: e2etest.SourceDir(t, "qa"), Target: repo + ":qa", Env: env}, io.Discard)
		var runErr *runs.Error
		if !errors.As(err, &runErr) || runErr.Failure.Stage != reporter.GateEnvironment {
			t.Fatalf("ship --env %q: %v", env, err)
		}
	}
	if code := s.GetJSON(t, "/v1/promotions/qa/"+repo, nil); code != http.StatusNotFound {
		t.Fatalf("GET /v1/promotions/qa/{repo}: %d", code)
	}

	// Gate "verified": a digest pushed around the pipeline was never proved.
	layout := t.TempDir() + "/layout"
	built := cli(t, "build", e2etest.SourceDir(t, "unverified"), "-o", layout)
	unverified := strings.TrimSpace(strings.SplitN(built, "\n", 2)[0])
	cli(t, "push", layout, repo+":side")
	out, err := promoteCLI(t, s, repo+"@"+unverified, "dev")
	rejected(out, err, reporter.GateVerified)

	a := s.ShipWith(t, "A", "team/chain:a", false)
	if s.Current(t, "dev", repo) != a {
		t.Fatal("a shipped digest is not in dev")
	}

	// Gate "previous-environment": prod before staging.
	out, err = promoteCLI(t, s, repo+"@"+a, "prod")
	rejected(out, err, reporter.GatePreviousEnv)

	out, err = promoteCLI(t, s, repo+"@"+a, "staging")
	promoted(out, err, "staging", a)

	// Gate "required-referrers": prod wants an SBOM; A has none.
	out, err = promoteCLI(t, s, repo+"@"+a, "prod")
	rejected(out, err, reporter.GateRequiredReferrers)
	if !strings.Contains(err.Error(), sbomType) {
		t.Errorf("the rejection does not name the missing type: %v", err)
	}

	b := s.ShipWith(t, "B", "team/chain:b", true)
	out, err = promoteCLI(t, s, repo+"@"+b, "staging")
	promoted(out, err, "staging", b)
	out, err = promoteCLI(t, s, repo+"@"+b, "prod")
	promoted(out, err, "prod", b)

	// Gate "tag-drift": someone points repo:prod elsewhere by hand.
	moveTag(t, repo, "prod", a)
	c := s.ShipWith(t, "C", "team/chain:c", true)
	if out, err := promoteCLI(t, s, repo+"@"+c, "staging"); err != nil {
		t.Fatalf("promote C to staging: %v\n%s", err, out)
	}
	out, err = promoteCLI(t, s, repo+"@"+c, "prod")
	rejected(out, err, reporter.GateTagDrift)
	if s.Current(t, "prod", repo) != b {
		t.Fatal("a rejected promotion changed the prod record")
	}
	moveTag(t, repo, "prod", b) // put it back
	out, err = promoteCLI(t, s, repo+"@"+c, "prod")
	promoted(out, err, "prod", c)

	// Rollback: B left staging, but it was in prod before.
	out, err = promoteCLI(t, s, repo+"@"+b, "prod")
	promoted(out, err, "prod", b)

	// The record: who asked, what it replaced, and the evidence.
	var detail struct {
		Current *events.Promotion  `json:"current"`
		History []api.HistoryEntry `json:"history"`
	}
	if s.GetJSON(t, "/v1/promotions/prod/"+repo, &detail) != http.StatusOK || detail.Current == nil {
		t.Fatal("GET /v1/promotions/prod/{repo} failed")
	}
	cur := detail.Current
	if cur.Digest != b || cur.PreviousDigest != c || cur.RequestedBy != "alice" || cur.Tag != "prod" ||
		cur.Evidence.Request == "" || cur.Evidence.Build == "" || cur.Evidence.Push == "" || cur.Evidence.Verify == "" {
		t.Fatalf("prod record %+v", cur)
	}
	prodTag, err := name.NewTag(repo + ":prod")
	if err != nil {
		t.Fatal(err)
	}
	if desc, err := remote.Head(prodTag); err != nil || desc.Digest.String() != b {
		t.Fatalf("%s:prod is %v (%v), want %s", repo, desc, err, b)
	}
	var kinds []string
	for _, h := range detail.History {
		kinds = append(kinds, h.Kind)
	}
	if want := []string{"promoted", "promoted", "rejected", "promoted", "rejected", "rejected"}; !slices.Equal(kinds, want) {
		t.Errorf("prod history, newest first: %v, want %v", kinds, want)
	}

	// Every gate's rejection is in the history, and records lists prod.
	var hist api.Page[api.HistoryEntry]
	if s.GetJSON(t, "/v1/history?kind=rejected", &hist) != http.StatusOK {
		t.Fatal("GET /v1/history failed")
	}
	gates := map[string]bool{}
	for _, h := range hist.Items {
		if h.Rejection != nil {
			gates[h.Rejection.Gate] = true
		}
	}
	for _, g := range []string{reporter.GateEnvironment, reporter.GateVerified, reporter.GatePreviousEnv, reporter.GateRequiredReferrers, reporter.GateTagDrift} {
		if !gates[g] {
			t.Errorf("no rejection by gate %s in the history (have %v)", g, gates)
		}
	}
	records := cli(t, "records", "--env", "prod", "--api", s.APIURL)
	if !strings.Contains(records, b) || !strings.Contains(records, "alice") {
		t.Errorf("records --env prod:\n%s", records)
	}
	// The history a page at a time: the newest rejection, then the next
	// page by the cursor the first names.
	first := cli(t, "records", "--history", "--env", "prod", "--kind", "rejected", "--limit", "1", "--api", s.APIURL)
	_, cursor, ok := strings.Cut(first, "--cursor ")
	if !ok || strings.Count(first, "rejected") != 1 {
		t.Fatalf("records --history --limit 1:\n%s", first)
	}
	second := cli(t, "records", "--history", "--env", "prod", "--kind", "rejected", "--limit", "1", "--cursor", strings.TrimSpace(cursor), "--api", s.APIURL)
	if strings.Count(second, "rejected") != 1 || second == first {
		t.Errorf("the next page:\n%s\nafter:\n%s", second, first)
	}

	// The promotions are attested on the digest itself.
	types := s.ReferrerTypes(t, "team/chain", b)
	if n := countOf(types, reporter.ArtifactTypePromotion); n != 4 { // dev, staging, prod, prod again
		t.Errorf("B carries %d promotion attestations, want 4: %v", n, types)
	}
}

func countOf(xs []string, x string) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}

// TestPromotionAPIRequiresAToken: writes without the right bearer token are
// refused, and nothing reaches the bus.
func TestPromotionAPIRequiresAToken(t *testing.T) {
	s, _ := e2etest.StartStack(t, e2etest.WithReporter(func(c *reporter.Config) { c.Tokens = map[string]string{"alice": aliceToken} }))
	repo := s.RegistryAddr + "/team/guarded"
	dgst := s.ShipWith(t, "guarded", "team/guarded:1", false)
	body := `{"ref": "` + repo + "@" + dgst + `", "to": "staging"}`
	post := func(token, body string) int { return s.Post(t, "/v1/promotions", token, body) }
	for _, tc := range []struct {
		name, token, body string
		want              int
	}{
		{"no token", "", body, http.StatusUnauthorized},
		{"wrong token", "mallory-token-0123456789abcdef", body, http.StatusUnauthorized},
		{"a prefix of the token", aliceToken[:10], body, http.StatusUnauthorized},
		{"not JSON", aliceToken, "promote it", http.StatusBadRequest},
		{"by tag", aliceToken, `{"ref": "` + repo + `:1", "to": "staging"}`, http.StatusBadRequest},
		{"unknown environment", aliceToken, `{"ref": "` + repo + "@" + dgst + `", "to": "qa"}`, http.StatusBadRequest},
		{"too big", aliceToken, `{"ref": "` + strings.Repeat("x", 70<<10) + `"}`, http.StatusRequestEntityTooLarge},
	} {
		if got := post(tc.token, tc.body); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	stream, err := s.JetStream.Stream(context.Background(), events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.GetLastMsgForSubject(context.Background(), events.PromotionRequested.Filter()); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("a refused request reached the bus: %v", err)
	}

	if got := post(aliceToken, body); got != http.StatusAccepted {
		t.Fatalf("alice's request: %d", got)
	}
	e2etest.WaitFor(t, "the promotion to staging", func() bool { return s.Current(t, "staging", repo) == dgst })
	var recs api.Page[events.Promotion]
	s.GetJSON(t, "/v1/promotions?env=staging", &recs)
	if len(recs.Items) != 1 || recs.Items[0].RequestedBy != "alice" {
		t.Fatalf("staging records %+v", recs.Items)
	}
	raw, _ := json.Marshal(recs.Items)
	if strings.Contains(string(raw), aliceToken) {
		t.Fatal("the token is in the record")
	}
}

// TestAttestationThroughTheFallbackTag: on a registry without the referrers
// API, the promotion attestation is listed in the sha256-<hex> tag index.
func TestAttestationThroughTheFallbackTag(t *testing.T) {
	s, _ := e2etest.StartStack(t, e2etest.WithRegistryWrapper(withoutReferrersAPI))
	dgst := s.ShipWith(t, "fallback", "team/fallback:1", false)
	repo := s.RegistryAddr + "/team/fallback"
	r, err := name.NewRepository(repo)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New().Open(context.Background(), r, false)
	if err != nil {
		t.Fatal(err)
	}
	refs, err := reg.Referrers(context.Background(), digestOf(t, dgst))
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 1 || refs[0].ArtifactType != reporter.ArtifactTypePromotion {
		t.Fatalf("referrers via the fallback tag: %+v", refs)
	}
	tags := cli(t, "tags", repo)
	if !strings.Contains(tags, registry.FallbackTag(digestOf(t, dgst))) {
		t.Fatalf("no fallback tag among:\n%s", tags)
	}
	out := cli(t, "discover", repo+"@"+dgst)
	if !strings.Contains(out, reporter.ArtifactTypePromotion) {
		t.Fatalf("discover does not show the attestation:\n%s", out)
	}
}

// withoutReferrersAPI makes the embedded registry look like one that lacks
// the referrers API: 404 on /referrers/, and no OCI-Subject acknowledgement.
func withoutReferrersAPI(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/referrers/") {
			http.NotFound(w, r)
			return
		}
		next.ServeHTTP(noSubjectHeader{w}, r)
	})
}

type noSubjectHeader struct{ http.ResponseWriter }

func (w noSubjectHeader) WriteHeader(status int) {
	w.Header().Del("OCI-Subject")
	w.ResponseWriter.WriteHeader(status)
}

func digestOf(t *testing.T, s string) digest.Digest {
	t.Helper()
	d, err := digest.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
