package policy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/policy"
)

var chain = []string{"dev", "staging", "prod"}

// write puts a policy file in a test's directory and returns its path.
func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLoadRefusesWhatCannotBeEnforced: every mistake in a policy file is
// found at start, naming the file and the line, never at the first
// promotion.
func TestLoadRefusesWhatCannotBeEnforced(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		body, says string
	}{
		"unknown field":        {"environments:\n  prod:\n    rulez: []\n", "field rulez not found"},
		"outside the chain":    {"environments:\n  qa:\n    rules: [{name: a, expr: 'true'}]\n", `environment "qa" is not in the promotion chain dev → staging → prod`},
		"unknown variable":     {"environments:\n  prod:\n    rules:\n      - name: typo\n        expr: signaturez.size() > 0\n", `:5: rule "typo"`},
		"not a bool":           {"environments:\n  prod:\n    rules:\n      - name: count\n        expr: signatures.size()\n", `:5: rule "count" is a int, want a bool`},
		"a rule with no name":  {"environments:\n  prod:\n    rules:\n      - expr: 'true'\n", "rule 1: want a name and an expr"},
		"a key that is no key": {"environments:\n  prod:\n    keys: [/nonexistent/key.pub]\n", "environment prod"},
		"a bad place":          {"environments:\n  prod:\n    place: prod\n", "environment prod: place"},
		"an unknown order":     {"environments:\n  prod:\n    promotions: fifo\n", `promotions "fifo": want newest (the default) or queue`},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := policy.Load(write(t, tc.body), chain)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Load = %v, want an error saying %q", err, tc.says)
			}
		})
	}
}

func TestQueuesIsPerEnvironment(t *testing.T) {
	t.Parallel()
	p, err := policy.Load(write(t, "environments:\n  prod:\n    promotions: queue\n  staging:\n    promotions: newest\n"), chain)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Queues("prod") || p.Queues("staging") || p.Queues("dev") || !p.Queueing() {
		t.Errorf("queues prod %t, staging %t, dev %t", p.Queues("prod"), p.Queues("staging"), p.Queues("dev"))
	}
	var none *policy.Policy
	if none.Queues("prod") || none.Queueing() {
		t.Error("no policy queues")
	}
}

// TestEvaluate runs each clause over the evidence a promotion has, every
// one in order, with the values it read and, where it could not be
// evaluated, why.
func TestEvaluate(t *testing.T) {
	t.Parallel()
	p, err := policy.Load(write(t, `environments:
  prod:
    rules:
      - name: signed
        expr: signatures.size() > 0
      - name: soaked
        expr: soak >= duration("24h")
      - name: from-main
        expr: provenance.ref == "refs/heads/main"
      - name: two-approvals
        expr: approvals.filter(a, a.by in ["alice", "bob"]).size() >= 2
`), chain)
	if err != nil {
		t.Fatal(err)
	}
	base := func() map[string]any {
		return map[string]any{
			"environment": "prod", "repository": "r.example/app", "digest": "sha256:ab", "requested_by": "ci",
			"signatures":   []map[string]string{{"keyid": "k1"}},
			"attestations": []map[string]any{}, "referrers": []map[string]any{}, "packages": []map[string]string{},
			"provenance": map[string]any{"ref": "refs/heads/main"},
			"approvals":  []map[string]any{{"by": "alice"}, {"by": "bob"}},
			"soak":       48 * time.Hour, "now": time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC),
		}
	}
	for name, tc := range map[string]struct {
		change func(map[string]any)
		failed []string // the clauses that do not pass, in order
	}{
		"everything holds":  {func(map[string]any) {}, nil},
		"unsigned":          {func(in map[string]any) { in["signatures"] = []map[string]string{} }, []string{"signed"}},
		"not soaked enough": {func(in map[string]any) { in["soak"] = time.Hour }, []string{"soaked"}},
		"from a branch":     {func(in map[string]any) { in["provenance"] = map[string]any{"ref": "refs/heads/wip"} }, []string{"from-main"}},
		"no provenance":     {func(in map[string]any) { in["provenance"] = map[string]any{} }, []string{"from-main"}},
		"one approver":      {func(in map[string]any) { in["approvals"] = []map[string]any{{"by": "alice"}, {"by": "mallory"}} }, []string{"two-approvals"}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			in := base()
			tc.change(in)
			clauses := p.Evaluate("prod", in)
			if len(clauses) != 4 {
				t.Fatalf("%d clauses, want every rule's: %+v", len(clauses), clauses)
			}
			var failed []string
			for _, c := range clauses {
				if !c.Passed {
					failed = append(failed, c.Name)
					if !strings.Contains(c.Reason(), c.Expr) {
						t.Errorf("the reason %q does not show the expression", c.Reason())
					}
				}
			}
			if strings.Join(failed, ",") != strings.Join(tc.failed, ",") {
				t.Errorf("failed %v, want %v", failed, tc.failed)
			}
		})
	}
	clauses := p.Evaluate("prod", func() map[string]any { in := base(); in["provenance"] = map[string]any{}; return in }())
	if c := clauses[2]; c.Error == "" || c.Values["provenance"] == nil {
		t.Errorf("a clause over a missing field: %+v, want why it could not be evaluated and the values it read", c)
	}
	if got := clauses[1].Values["soak"]; got != "48h0m0s" {
		t.Errorf("a duration is shown as %v, want 48h0m0s", got)
	}
	if p.Has("dev") || p.Evaluate("dev", base()) != nil || !p.Has("prod") {
		t.Error("an environment without rules has no clauses")
	}
	if !p.Reads("prod", "approvals") || p.Reads("prod", "packages") {
		t.Error("Reads names exactly the variables the rules read")
	}
}
