package main

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/runs"
)

// TestThePageShowsRunsPromotionsAndHistory: the reporter's page shows a
// finished run's stage timeline, a failed run's failing stage in red with
// its hint, what is promoted where, and the history.
func TestThePageShowsRunsPromotionsAndHistory(t *testing.T) {
	s, _ := e2etest.StartStack(t, e2etest.WithRegistryWrapper(tamper))
	ok, out, err := s.Ship(t, e2etest.SourceDir(t, "page"), "team/page:1")
	if err != nil {
		t.Fatalf("ship: %v\n%s", err, out)
	}
	bad, _, err := s.Ship(t, e2etest.SourceDir(t, "page corrupt"), "corrupt/page:1")
	if err == nil {
		t.Fatal("the corrupted run passed")
	}

	var recent []runs.Run
	if s.GetJSON(t, "/v1/runs", &recent) != http.StatusOK || len(recent) != 2 || recent[0].ID != bad.RunID || recent[1].ID != ok.RunID {
		t.Fatalf("GET /v1/runs: %+v", recent)
	}
	if recent[1].Status != "promoted" || recent[0].Status != "failed" {
		t.Fatalf("statuses %s, %s", recent[1].Status, recent[0].Status)
	}
	var names []string
	for _, st := range recent[1].Steps {
		names = append(names, st.Name)
	}
	for _, want := range []string{"build", "upload", "tag update", "verify", "gates", "promote"} {
		if !slices.Contains(names, want) {
			t.Errorf("the promoted run's timeline lacks %q: %v", want, names)
		}
	}
	failed := slices.IndexFunc(recent[0].Steps, func(st runs.Step) bool { return st.Status == "failed" })
	if failed < 0 || recent[0].Steps[failed].Hint == "" {
		t.Fatalf("the failed run's timeline has no failed step with a hint: %+v", recent[0].Steps)
	}

	resp, err := http.Get(s.APIURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	html := string(b)
	for _, want := range []string{
		"<title>digestline</title>", `http-equiv="refresh"`, ok.RunID[:19], bad.RunID[:19],
		`class="status promoted"`, `class="status failed"`, `class="bar failed"`, escapeHTML(recent[0].Steps[failed].Hint),
		`class="bar ok"`, ">upload<", s.RegistryAddr + "/team/page", "Promoted now", "History",
	} {
		if !strings.Contains(html, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(html)
	}
}

// escapeHTML escapes s as html/template does in text.
func escapeHTML(s string) string {
	return strings.NewReplacer("&", "&amp;", "'", "&#39;", "<", "&lt;", ">", "&gt;", `"`, "&#34;").Replace(s)
}
