package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/policy"
	"github.com/digestline/digestline/services/reporter"
	"github.com/nats-io/nats.go/jetstream"
)

// TestFreezesRefuseUntilAnEmergencyApproval: a freeze someone set and a
// freeze window of the policy (in Tokyo's time, covering now) refuse
// every promotion, naming the freeze, its reason and when it ends, and a
// dry run shows it; an approval by the policy's emergency approver lets
// one promotion through, which the record and the history call an
// emergency; unfreezing lets the pipeline promote again.
func TestFreezesRefuseUntilAnEmergencyApproval(t *testing.T) {
	t.Setenv("DIGESTLINE_API_TOKEN", "")
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().In(tokyo) // from an hour ago to an hour from now, there (across midnight, near it)
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policyFile, fmt.Appendf(nil, `environments:
  staging:
    emergency: [dev]
    freezes:
      - name: release-review
        reason: the release board meets
        timezone: Asia/Tokyo
        start: "%s"
        end: "%s"
`, now.Add(-time.Hour).Format("15:04"), now.Add(time.Hour).Format("15:04")), 0o644); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(policyFile, reporter.DefaultEnvironments)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := e2etest.StartStack(t, e2etest.WithReporter(func(c *reporter.Config) { c.Policy = pol }))
	token := []string{"--api", s.APIURL, "--token-file", s.TokenFile}
	repo := s.RegistryAddr + "/team/app"
	res, out, err := s.Ship(t, e2etest.SourceDir(t, "v1"), "team/app:v1")
	if err != nil {
		t.Fatalf("ship: %v\n%s", err, out)
	}
	v1 := res.Promotion.Digest

	// dev, frozen by someone: the pipeline's own promotion is refused.
	cli(t, append([]string{"freeze", "dev", "--until", "1h", "--reason", "incident 42"}, token...)...)
	if _, out, err := s.Ship(t, e2etest.SourceDir(t, "v2"), "team/app:v2"); err == nil || !strings.Contains(err.Error(), "gate freeze") || !strings.Contains(err.Error(), " by dev: incident 42") || strings.Contains(err.Error(), "by by") {
		t.Fatalf("a build promoted into frozen dev: %v\n%s", err, out)
	}

	// staging, frozen by the policy's window: a dry run shows it, a
	// promotion is refused, naming it and who may let one through.
	if out, err := cliErr(t, "promote", repo+"@"+v1, "--to", "staging", "--dry-run", "--api", s.APIURL); err == nil || !strings.Contains(out, "would be rejected at gate freeze") || !strings.Contains(out, "release-review") {
		t.Fatalf("a dry run into frozen staging: %v\n%s", err, out)
	}
	out, err = promoteCLI(t, s, repo+"@"+v1, "staging", "--token-file", s.TokenFile)
	if err == nil || !strings.Contains(err.Error(), " by freeze window release-review: the release board meets") || strings.Contains(err.Error(), "by by") || !strings.Contains(err.Error(), "have dev run: digestline approve") {
		t.Fatalf("a promotion into frozen staging: %v\n%s", err, out)
	}
	if page := getPage(t, s.APIURL+"/envs/staging"); !strings.Contains(page, "Frozen until") || !strings.Contains(page, "release-review") {
		t.Errorf("staging's page does not show its freeze:\n%s", page)
	}
	var freezes []api.Freeze
	if s.GetJSON(t, "/v1/freezes", &freezes) != http.StatusOK || len(freezes) != 2 || freezes[0].Reason != "incident 42" || freezes[1].Name != "release-review" {
		t.Fatalf("freezes: %+v", freezes)
	}

	// The emergency approver approves: one promotion goes through.
	cli(t, append([]string{"approve", repo + "@" + v1, "--to", "staging"}, token...)...)
	if out, err := promoteCLI(t, s, repo+"@"+v1, "staging", "--token-file", s.TokenFile); err != nil {
		t.Fatalf("an emergency promotion: %v\n%s", err, out)
	}
	var rec api.PromotionRecord
	if s.GetJSON(t, "/v1/promotions/staging/"+repo, &rec) != http.StatusOK || rec.Current == nil || rec.Current.Digest != v1 ||
		!strings.Contains(rec.Current.Emergency, "release-review") || !strings.Contains(rec.Current.Emergency, "approved by dev") {
		t.Fatalf("staging's record: %+v", rec.Current)
	}
	if len(rec.History) == 0 || rec.History[0].Promotion == nil || rec.History[0].Promotion.Emergency == "" {
		t.Errorf("staging's history does not say it was an emergency: %+v", rec.History)
	}

	// Unfrozen, dev takes the pipeline's promotions again; a policy's
	// window is not unfrozen by hand.
	cli(t, append([]string{"unfreeze", "dev"}, token...)...)
	if _, out, err := s.Ship(t, e2etest.SourceDir(t, "v2"), "team/app:v2"); err != nil {
		t.Fatalf("a build into dev once unfrozen: %v\n%s", err, out)
	}
	if _, err := cliErr(t, append([]string{"unfreeze", "staging"}, token...)...); err == nil || !strings.Contains(err.Error(), "policy file") {
		t.Errorf("unfreeze of a policy's window: %v", err)
	}
	var hist api.Page[api.HistoryEntry]
	if s.GetJSON(t, "/v1/history?env=dev", &hist) != http.StatusOK || !strings.HasPrefix(historyKinds(hist.Items), "promoted unfrozen rejected frozen promoted") {
		t.Errorf("dev's history, newest first: %s", historyKinds(hist.Items))
	}
	// Each freeze was announced on the bus, for the notifier: the window
	// as it was in force when the reporter started, dev's freeze and its
	// lifting by hand.
	if got, want := freezeEvents(t, s), []string{"environment.frozen staging policy release-review", "environment.frozen dev dev ",
		"environment.unfrozen dev dev "}; !slices.Equal(got, want) {
		t.Errorf("freeze events: %q, want %q", got, want)
	}
}

// freezeEvents are the stack's environment.frozen and .unfrozen events, in
// order: name, environment, by, window.
func freezeEvents(t *testing.T, s *e2etest.Stack) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := s.Env.JetStream.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.EnvironmentFrozen.Filter(), events.EnvironmentUnfrozen.Filter()}})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		msg, err := c.Next(jetstream.FetchMaxWait(500 * time.Millisecond))
		if err != nil {
			return out
		}
		ev, name, err := events.Parse(msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		f, err := events.Decode[events.FreezeNotice](ev)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %s %s %s", name, f.Environment, f.By, f.Window))
	}
}
