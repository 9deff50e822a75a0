package main

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/digestline/digestline/services/reporter"
)

// TestThePagesLinkEveryRunEnvironmentAndDigest: after a promoted run, a
// run that fails its verification and a rejected promotion, every link on
// the pages resolves; a click reaches each run's steps, hints and trace
// link, and from a digest where it is promoted; a rejection's reason shows
// once, with its hint.
func TestThePagesLinkEveryRunEnvironmentAndDigest(t *testing.T) {
	s, _ := e2etest.StartStack(t, e2etest.WithRegistryWrapper(tamper), e2etest.WithReporter(func(c *reporter.Config) {
		c.TraceURL = "http://traces.example/trace/{traceId}"
	}))
	ok, out, err := s.Ship(t, e2etest.SourceDir(t, "page"), "team/page:1")
	if err != nil {
		t.Fatalf("ship: %v\n%s", err, out)
	}
	bad, _, err := s.Ship(t, e2etest.SourceDir(t, "page corrupt"), "corrupt/page:1")
	if err == nil {
		t.Fatal("the corrupted run passed")
	}
	token, err := os.ReadFile(s.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	ref := ok.Promotion.Repository + "@" + ok.Promotion.Digest
	if code := s.Post(t, "/v1/promotions", strings.TrimSpace(string(token)), `{"ref":"`+ref+`","to":"prod"}`); code != http.StatusAccepted {
		t.Fatalf("promotion request: %d", code)
	}
	e2etest.WaitFor(t, "the rejection in the history", func() bool {
		var hist api.Page[api.HistoryEntry]
		s.GetJSON(t, "/v1/history?kind=rejected", &hist)
		return len(hist.Items) > 0
	})

	// The run list is filed by its own consumer, as the runs start.
	var recent api.Page[runs.Run]
	e2etest.WaitFor(t, "the three runs in GET /v1/runs", func() bool {
		return s.GetJSON(t, "/v1/runs", &recent) == http.StatusOK && len(recent.Items) == 3
	})
	pages := crawl(t, s.APIURL)
	index := pages["/"]
	for _, want := range []string{`http-equiv="refresh"`, `href="/runs/` + ok.RunID + `"`, `href="/runs/` + bad.RunID + `"`,
		`href="/envs/dev"`, `href="/digests/` + ok.Promotion.Digest + `"`, `class="status failed"`, `class="bar failed"`} {
		if !strings.Contains(index, want) {
			t.Errorf("the front page lacks %s", want)
		}
	}
	// The rejection: its reason once, and its hint.
	var hist api.Page[api.HistoryEntry]
	s.GetJSON(t, "/v1/history?kind=rejected", &hist)
	rejection := hist.Items[0]
	runsTable, _, _ := strings.Cut(index, "<h2>Promoted now</h2>")
	reason, hint := escapeHTML(rejection.Rejection.Reason), escapeHTML(rejection.Rejection.Hint)
	if strings.Count(runsTable, reason) != 1 || !strings.Contains(runsTable, hint) {
		t.Errorf("the rejected run's row shows its reason %d times (want once), its hint: %v", strings.Count(runsTable, reason), strings.Contains(runsTable, hint))
	}
	if rp := pages["/runs/"+rejection.RunID]; strings.Count(rp, reason) != 1 || !strings.Contains(rp, hint) {
		t.Errorf("the rejected run's page shows its reason %d times (want once), its hint: %v", strings.Count(rp, reason), strings.Contains(rp, hint))
	}

	// A failed run's page: its failing step, class and hint, and its trace.
	var failed runs.Run
	for _, r := range recent.Items {
		if r.ID == bad.RunID {
			failed = r
		}
	}
	step := failed.Steps[slices.IndexFunc(failed.Steps, func(st runs.Step) bool { return st.Status == "failed" })]
	runPage := pages["/runs/"+bad.RunID]
	for _, want := range []string{bad.RunID, step.Class, escapeHTML(step.Hint), `href="http://traces.example/trace/` + failed.TraceID + `"`, "<h2>Events</h2>"} {
		if !strings.Contains(runPage, want) {
			t.Errorf("the failed run's page lacks %s", want)
		}
	}
	if failed.TraceID == "" {
		t.Error("the failed run has no trace id")
	}
	// From the digest, a click reaches where it is promoted.
	if dg := pages["/digests/"+ok.Promotion.Digest]; !strings.Contains(dg, `href="/envs/dev"`) || !strings.Contains(dg, `href="/runs/`+ok.RunID+`"`) {
		t.Errorf("the digest's page does not link its environment and run:\n%s", dg)
	}
	if env := pages["/envs/dev"]; !strings.Contains(env, ok.Promotion.Repository) {
		t.Errorf("dev's page does not show %s", ok.Promotion.Repository)
	}
	var where api.DigestReport
	if s.GetJSON(t, "/v1/digests/"+ok.Promotion.Digest, &where) != http.StatusOK || len(where.Current) != 1 || where.Current[0].Environment != "dev" ||
		!slices.Contains(where.Runs, ok.RunID) {
		t.Errorf("GET /v1/digests: %+v", where)
	}
	// Any unique prefix of a run's id finds it.
	resp, err := http.Get(s.APIURL + "/runs/" + ok.RunID[:8])
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/runs/"+ok.RunID {
		t.Errorf("/runs/%s: %d at %s", ok.RunID[:8], resp.StatusCode, resp.Request.URL.Path)
	}
}

// crawl fetches every page reachable from base's front page by its links
// on base, failing the test for any that does not answer 200; it returns
// each page's HTML by path.
func crawl(t *testing.T, base string) map[string]string {
	t.Helper()
	href := regexp.MustCompile(`href="([^"]+)"`)
	pages := map[string]string{}
	queue := []string{"/"}
	for len(queue) > 0 && len(pages) < 200 {
		path := queue[0]
		queue = queue[1:]
		if _, seen := pages[path]; seen {
			continue
		}
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s answers %d: %s", path, resp.StatusCode, b)
		}
		pages[path] = string(b)
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			continue // the API's JSON, linked from the pages
		}
		for _, m := range href.FindAllStringSubmatch(string(b), -1) {
			u, err := url.Parse(strings.ReplaceAll(m[1], "&amp;", "&"))
			if err != nil {
				t.Errorf("%s links %q: %v", path, m[1], err)
				continue
			}
			if u.Host == "" {
				queue = append(queue, u.RequestURI())
			}
		}
	}
	return pages
}

// escapeHTML escapes s as html/template does in text.
func escapeHTML(s string) string {
	return strings.NewReplacer("&", "&amp;", "'", "&#39;", "<", "&lt;", ">", "&gt;", `"`, "&#34;").Replace(s)
}
