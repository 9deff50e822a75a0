package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/events"
)

// TestReleaseMovesEveryTagOrNone: a release of three images whose third
// tag move the registry refuses puts the first two back where they were,
// and is recorded as failed, naming the image; once the registry takes
// it, the release lands as one (one record, one promoted event listing
// every image, each image's own record and history); then it is rolled
// back as one, pinning each image.
func TestReleaseMovesEveryTagOrNone(t *testing.T) {
	t.Setenv("DIGESTLINE_API_TOKEN", "")
	var refuse atomic.Value // the path whose PUT the registry refuses
	refuse.Store("")
	s, _ := e2etest.StartStack(t, e2etest.WithRegistryWrapper(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut && r.URL.Path == refuse.Load().(string) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusForbidden)
				_, _ = w.Write([]byte(`{"errors":[{"code":"DENIED","message":"tag staging is protected"}]}`))
				return
			}
			next.ServeHTTP(w, r)
		})
	}))
	token := []string{"--api", s.APIURL, "--token-file", s.TokenFile, "--timeout", "1m"}
	apps := []string{"cart", "checkout", "search"}
	repo := func(app string) string { return s.RegistryAddr + "/shop/" + app }
	ship := func(app, content string) string { // built, verified and in dev
		t.Helper()
		res, out, err := s.Ship(t, e2etest.SourceDir(t, app+content), "shop/"+app+":"+content)
		if err != nil {
			t.Fatalf("ship %s %s: %v\n%s", app, content, err, out)
		}
		return res.Promotion.Digest
	}
	v1, v2 := map[string]string{}, map[string]string{}
	for _, app := range apps {
		v1[app] = ship(app, "v1")
		if out, err := promoteCLI(t, s, repo(app)+"@"+v1[app], "staging", "--token-file", s.TokenFile); err != nil {
			t.Fatalf("promote %s v1 to staging: %v\n%s", app, err, out)
		}
		v2[app] = ship(app, "v2")
	}
	file := filepath.Join(t.TempDir(), "release.yaml")
	release := "name: shop-2026.12.1\nto: staging\nimages:\n"
	for _, app := range apps {
		release += "  - " + repo(app) + "@" + v2[app] + "\n"
	}
	if err := os.WriteFile(file, []byte(release), 0o600); err != nil {
		t.Fatal(err)
	}
	stagingHolds := func(want map[string]string) {
		t.Helper()
		for _, app := range apps {
			if got := tagDigest(t, s, "shop/"+app, "staging"); got != want[app] {
				t.Errorf("%s:staging points at %s, want %s", app, got, want[app])
			}
			var rec api.PromotionRecord
			if s.GetJSON(t, "/v1/promotions/staging/"+repo(app), &rec) != http.StatusOK || rec.Current == nil || rec.Current.Digest != want[app] {
				t.Errorf("staging's record of %s: %+v, want %s", app, rec.Current, want[app])
			}
		}
	}

	// The registry refuses the third tag: the first two are put back.
	refuse.Store("/v2/shop/search/manifests/staging")
	out, err := cliErr(t, append([]string{"promote", "--release", file}, token...)...)
	if err == nil || !strings.Contains(out, "[GATE] every gate passed for every image of release shop-2026.12.1") ||
		!strings.Contains(err.Error(), "release shop-2026.12.1 failed at "+repo("search")+"@"+v2["search"]+
			" (put back: "+repo("checkout")+"@"+v1["checkout"]+", "+repo("cart")+"@"+v1["cart"]+")") {
		t.Fatalf("a release whose third tag is refused: %v\n%s", err, out)
	}
	stagingHolds(v1)
	// The reporter files the failure as the run ends: a moment after.
	var page api.Page[api.HistoryEntry]
	for deadline := time.Now().Add(10 * time.Second); len(page.Items) == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		s.GetJSON(t, "/v1/history?env=staging&kind=release-failed", &page)
	}
	if len(page.Items) != 1 || page.Items[0].Failure == nil || page.Items[0].Failure.Release == nil {
		t.Fatalf("staging's failed releases: %+v", page.Items)
	}
	if f := page.Items[0].Failure.Release; f.Image != repo("search")+"@"+v2["search"] || len(f.PutBack) != 2 || len(f.Left) != 0 ||
		f.PutBack[0] != repo("checkout")+"@"+v1["checkout"] || f.PutBack[1] != repo("cart")+"@"+v1["cart"] {
		t.Errorf("the failed release's record: %+v", f)
	}

	// The registry takes it: the release lands as one.
	refuse.Store("")
	out = cli(t, append([]string{"promote", "--release", file}, token...)...)
	if !strings.Contains(out, "released shop-2026.12.1 to staging: 3 images") {
		t.Fatalf("the release:\n%s", out)
	}
	stagingHolds(v2)
	var rel events.Promotion
	if s.GetJSON(t, "/v1/releases/staging/shop-2026.12.1", &rel) != http.StatusOK || rel.Release == nil || len(rel.Release.Images) != 3 {
		t.Fatalf("the release's record: %+v", rel)
	}
	for i, app := range apps {
		if im := rel.Release.Images[i]; im.Repository != repo(app) || im.Digest != v2[app] || im.PreviousDigest != v1[app] {
			t.Errorf("the release's image %d: %+v", i, im)
		}
	}
	promoted := 0
	for _, ev := range s.RunEvents(t, rel.RunID) {
		if ev["type"] == events.Promoted.Type() {
			promoted++
		}
	}
	if promoted != 1 {
		t.Errorf("the release's run has %d promoted events, want 1", promoted)
	}
	if s.GetJSON(t, "/v1/history?env=staging&kind=release", &page) != http.StatusOK || len(page.Items) != 1 {
		t.Errorf("staging's releases: %+v", page.Items)
	}
	if s.GetJSON(t, "/v1/history?digest="+v2["cart"], &page) != http.StatusOK || !strings.Contains(historyKinds(page.Items), "release") {
		t.Errorf("cart v2's history does not list the release: %s", historyKinds(page.Items))
	}

	if page := getPage(t, s.APIURL+"/envs/staging"); !strings.Contains(page, "release <strong>shop-2026.12.1</strong>") || !strings.Contains(page, "failed at "+repo("search")) {
		t.Errorf("staging's page does not show the release and its failure:\n%s", page)
	}

	// Rolled back as one: every image back to v1, each pinned.
	out = cli(t, append([]string{"rollback", "staging", "--release", "shop-2026.12.1", "--reason", "checkout and cart disagree"}, token...)...)
	if !strings.Contains(out, "a rollback: checkout and cart disagree") {
		t.Fatalf("the release's rollback:\n%s", out)
	}
	stagingHolds(v1)
	var pins []api.Pin
	if s.GetJSON(t, "/v1/pins", &pins) != http.StatusOK || len(pins) != 3 {
		t.Errorf("pins after the release's rollback: %+v", pins)
	}

	// Releases that cannot be: each says why, and nothing starts.
	for _, tc := range []struct {
		body api.ReleaseRequest
		says string
	}{
		{api.ReleaseRequest{Name: "r", To: "qa", Images: []string{repo("cart") + "@" + v1["cart"]}}, "not in the promotion chain"},
		{api.ReleaseRequest{Name: "r", To: "staging", Images: []string{repo("cart") + "@" + v1["cart"], repo("cart") + "@" + v2["cart"]}}, "twice"},
		{api.ReleaseRequest{Name: "r", To: "staging"}, "no image"},
		{api.ReleaseRequest{Name: "r", To: "staging", Images: []string{repo("cart") + ":v1"}}, "by digest"},
		{api.ReleaseRequest{Name: "a release", To: "staging", Images: []string{repo("cart") + "@" + v1["cart"]}}, "release name"},
	} {
		if code, body := apiWrite(t, s, http.MethodPost, "/v1/releases", tc.body); code != http.StatusBadRequest || !strings.Contains(body, tc.says) {
			t.Errorf("POST /v1/releases %+v: %d %s, want 400 saying %q", tc.body, code, body, tc.says)
		}
	}
}

// tagDigest is the digest the stack's registry's repo:tag points at.
func tagDigest(t *testing.T, s *e2etest.Stack, repo, tag string) string {
	t.Helper()
	return tagDigestAt(t, s.RegistryAddr, repo, tag)
}

// tagDigestAt is the digest repo:tag (or repo@digest) points at in the
// registry at host, "" when it has none.
func tagDigestAt(t *testing.T, host, repo, tag string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodHead, "http://"+host+"/v2/"+repo+"/manifests/"+tag, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	return resp.Header.Get("Docker-Content-Digest")
}
