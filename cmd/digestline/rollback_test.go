package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/events"
)

// TestRollbackPinsUntilUnpinned: after a promotion chain, a rollback moves
// each environment back to the digest it held before, through the gates;
// the history and the promoted event say it is a rollback, and why; the
// pin refuses the pipeline's own promotion and a person's until it is
// lifted; and once the trusted key has changed, a rollback to a digest
// signed with the old one is refused by the policy, naming the rule, and
// leaves the environment pinned where it is.
func TestRollbackPinsUntilUnpinned(t *testing.T) {
	t.Setenv("DIGESTLINE_API_TOKEN", "")
	data := t.TempDir()
	s, stop := e2etest.StartStack(t, e2etest.WithDataDir(data), withEvidence(t))
	ship := func(s *e2etest.Stack, content string) string {
		t.Helper()
		res, out, err := s.Ship(t, e2etest.SourceDir(t, content), "team/app:"+content)
		if err != nil {
			t.Fatalf("ship %s: %v\n%s", content, err, out)
		}
		return res.Promotion.Digest
	}
	token := []string{"--api", s.APIURL, "--token-file", s.TokenFile, "--timeout", "1m"}
	repo := s.RegistryAddr + "/team/app"
	chain := func(content string) string { // through dev, then staging
		d := ship(s, content)
		if out, err := promoteCLI(t, s, repo+"@"+d, "staging", "--token-file", s.TokenFile); err != nil {
			t.Fatalf("promote %s to staging: %v\n%s", content, err, out)
		}
		return d
	}
	v1, v2 := chain("v1"), chain("v2")

	// Rollbacks that cannot be: each says why.
	for _, tc := range []struct {
		body api.RollbackRequest
		code int
		says string
	}{
		{api.RollbackRequest{Environment: "qa", Repository: repo, Reason: "x"}, http.StatusBadRequest, "not in the promotion chain"},
		{api.RollbackRequest{Environment: "staging", Repository: repo}, http.StatusBadRequest, `"reason" says why`},
		{api.RollbackRequest{Environment: "prod", Repository: repo, Reason: "x"}, http.StatusConflict, "holds nothing"},
		{api.RollbackRequest{Environment: "staging", Repository: repo, Reason: "x", To: v2}, http.StatusConflict, "holds " + v2 + " already"},
		{api.RollbackRequest{Environment: "staging", Repository: repo, Reason: "x", To: "sha256:" + strings.Repeat("0", 64)}, http.StatusConflict, "never held"},
		{api.RollbackRequest{Environment: "staging", Repository: repo, Reason: "x", To: "latest"}, http.StatusBadRequest, "a digest"},
	} {
		if code, body := apiWrite(t, s, http.MethodPost, "/v1/rollbacks", tc.body); code != tc.code || !strings.Contains(body, tc.says) {
			t.Errorf("POST /v1/rollbacks %+v: %d %s, want %d saying %q", tc.body, code, body, tc.code, tc.says)
		}
	}

	// staging goes back to v1: a rollback, recorded as one.
	out := cli(t, append([]string{"rollback", "staging", repo, "--reason", "v2 breaks checkout"}, token...)...)
	if !strings.Contains(out, "promoted staging "+repo+"@"+v1) || !strings.Contains(out, "previous "+v2) {
		t.Fatalf("rollback of staging:\n%s", out)
	}
	var rec api.PromotionRecord
	if s.GetJSON(t, "/v1/promotions/staging/"+repo, &rec) != http.StatusOK || rec.Current == nil ||
		rec.Current.Digest != v1 || !rec.Current.Rollback || rec.Current.Reason != "v2 breaks checkout" || rec.Current.PreviousDigest != v2 {
		t.Fatalf("staging's record after the rollback: %+v", rec.Current)
	}
	if kinds := historyKinds(rec.History); !strings.HasPrefix(kinds, "rollback pinned promoted") {
		t.Errorf("staging's history, newest first: %s", kinds)
	}
	evs := s.RunEvents(t, rec.Current.RunID)
	if last := evs[len(evs)-1]; last["type"] != events.Promoted.Type() || last["data"].(map[string]any)["rollback"] != true {
		t.Errorf("the rollback's last event: %v", last)
	}

	if page := getPage(t, s.APIURL+"/envs/staging"); !strings.Contains(page, "Pinned for") || !strings.Contains(page, "v2 breaks checkout") {
		t.Errorf("staging's page does not show its pin:\n%s", page)
	}
	// Pinned: a person's promotion is refused, naming the pin.
	if out, err := promoteCLI(t, s, repo+"@"+v2, "staging", "--token-file", s.TokenFile); err == nil || !strings.Contains(err.Error(), "gate pinned") || !strings.Contains(err.Error(), "v2 breaks checkout") {
		t.Fatalf("a promotion into pinned staging: %v\n%s", err, out)
	}
	// dev too, where the pipeline's own promotions go: a new build is
	// refused there until dev is unpinned.
	cli(t, append([]string{"rollback", "dev", repo, "--reason", "v2 crashes"}, token...)...)
	if _, out, err := s.Ship(t, e2etest.SourceDir(t, "v3"), "team/app:v3"); err == nil || !strings.Contains(out+err.Error(), "pinned") {
		t.Fatalf("a build promoted into pinned dev: %v\n%s", err, out)
	}
	var pins []api.Pin
	if s.GetJSON(t, "/v1/pins", &pins) != http.StatusOK || len(pins) != 2 {
		t.Fatalf("pins: %+v", pins)
	}
	cli(t, append([]string{"unpin", "dev", repo}, token[:4]...)...)
	v3 := ship(s, "v3")
	cli(t, append([]string{"unpin", "staging", repo}, token[:4]...)...)
	if out, err := promoteCLI(t, s, repo+"@"+v2, "staging", "--token-file", s.TokenFile); err != nil {
		t.Fatalf("a promotion into staging once unpinned: %v\n%s", err, out)
	}
	if out, err := cliErr(t, append([]string{"unpin", "staging", repo}, token[:4]...)...); err == nil || !strings.Contains(err.Error(), "not pinned") {
		t.Errorf("unpin of an environment not pinned: %v\n%s", err, out)
	}

	// The trusted key changes (the old one was revoked): a rollback of dev
	// to v1, signed with the old key, fails dev's policy and says which rule.
	stop()
	s2, _ := e2etest.StartStack(t, e2etest.WithDataDir(data), e2etest.WithRegistryAddr(s.RegistryAddr), withEvidence(t))
	out, err := cliErr(t, "rollback", "dev", repo, "--to", v1, "--reason", "back to v1", "--api", s2.APIURL, "--token-file", s2.TokenFile, "--timeout", "1m")
	if err == nil || !strings.Contains(err.Error(), `gate policy/signed: rule "signed"`) {
		t.Fatalf("a rollback to a digest signed with a key no longer trusted: %v\n%s", err, out)
	}
	if s2.GetJSON(t, "/v1/promotions/dev/"+repo, &rec) != http.StatusOK || rec.Current.Digest != v3 {
		t.Errorf("dev after the refused rollback holds %s, want %s", rec.Current.Digest, v3)
	}
	// A refused rollback leaves its pin: dev stays where it is, and the
	// pipeline stays out, until someone decides.
	if s2.GetJSON(t, "/v1/pins", &pins) != http.StatusOK || len(pins) != 1 || pins[0].Environment != "dev" || pins[0].Digest != v1 {
		t.Errorf("pins after the refused rollback: %+v", pins)
	}
}

// apiWrite sends body to the stack's API with its token, and returns the
// status and the answer (the error it says, when it is one).
func apiWrite(t *testing.T, s *e2etest.Stack, method, path string, body any) (int, string) {
	t.Helper()
	token, err := os.ReadFile(s.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, s.APIURL+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	var failed struct{ Error string }
	if json.Unmarshal(answer, &failed) == nil && failed.Error != "" {
		return resp.StatusCode, failed.Error
	}
	return resp.StatusCode, string(answer)
}

// getPage GETs a page of the stack and returns it.
func getPage(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d\n%s", u, resp.StatusCode, b)
	}
	return string(b)
}

// historyKinds are the entries' kinds, space-separated, in order.
func historyKinds(h []api.HistoryEntry) string {
	kinds := make([]string, len(h))
	for i, e := range h {
		kinds[i] = e.Kind
	}
	return strings.Join(kinds, " ")
}
