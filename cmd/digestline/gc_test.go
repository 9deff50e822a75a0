package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/digestline/digestline/cmd/digestline/internal/dev"
	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/policy"
	"github.com/digestline/digestline/pkg/registry/registrytest"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/digestline/digestline/services/reporter"
)

// TestGCKeepsWhatEnvironmentsMayNeed: after eight signed builds through
// dev and two promotions to staging, gc deletes exactly the digests no
// environment holds or may roll back to (each environment's rollback
// depth is 1), that are not the last run's, each with its signatures and
// attestations, and keeps the whole tree of the rest. A registry that
// refuses deletes stops it before anything goes; a dry run deletes
// nothing; a digest rolled back to between the plan and its delete
// survives;
// a second collection of the repository at once is refused; every
// deletion is an event and in the digest's history.
func TestGCKeepsWhatEnvironmentsMayNeed(t *testing.T) {
	t.Setenv("DIGESTLINE_API_TOKEN", "")
	dir := t.TempDir()
	pol := policyOf(t, "environments:\n  dev:\n    rollbackDepth: 1\n  staging:\n    rollbackDepth: 1\n")
	var refuse atomic.Bool    // the registry answers DELETE with 405 UNSUPPORTED
	var onDelete atomic.Value // runs once, at the first DELETE it sees
	onDelete.Store(func() {})
	var once sync.Once
	s, _ := e2etest.StartStack(t, e2etest.WithSigningKey(t, dir), func(c *dev.Config) { c.Reporter.Policy = pol },
		e2etest.WithRegistryWrapper(func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodDelete {
					if refuse.Load() {
						w.Header().Set("Content-Type", "application/json")
						w.WriteHeader(http.StatusMethodNotAllowed)
						_, _ = w.Write([]byte(`{"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported."}]}`))
						return
					}
					once.Do(onDelete.Load().(func()))
				}
				next.ServeHTTP(w, r)
			})
		}))
	token := []string{"--api", s.APIURL, "--token-file", s.TokenFile}
	repo := s.RegistryAddr + "/team/app"
	v := map[int]string{}
	for i := 1; i <= 8; i++ {
		res, out, err := s.Ship(t, e2etest.SourceDir(t, fmt.Sprintf("v%d", i)), fmt.Sprintf("team/app:v%d", i))
		if err != nil {
			t.Fatalf("ship v%d: %v\n%s", i, err, out)
		}
		v[i] = res.Promotion.Digest
		if i == 2 || i == 3 { // on to staging, while dev holds it
			if out, err := promoteCLI(t, s, repo+"@"+v[i], "staging", "--token-file", s.TokenFile); err != nil {
				t.Fatalf("promote v%d to staging: %v\n%s", i, err, out)
			}
		}
	}
	present := func(i int) bool { return tagDigest(t, s, "team/app", v[i]) == v[i] }
	gc := func(args ...string) (string, error) {
		return cliErr(t, append(append([]string{"gc", repo, "--keep-last", "1", "--keep-days", "0"}, args...), token...)...)
	}

	// A registry that refuses deletes: a clear error, and nothing goes.
	refuse.Store(true)
	if out, err := gc(); err == nil || !strings.Contains(err.Error(), "storage.delete.enabled") {
		t.Fatalf("gc on a registry that refuses deletes: %v\n%s", err, out)
	}
	refuse.Store(false)
	for i := 1; i <= 8; i++ {
		if !present(i) {
			t.Fatalf("v%d is gone after a gc the registry refused", i)
		}
	}

	// A negative count is refused, naming the flag, before anything runs.
	if out, err := gc("--keep-last", "-1"); err == nil || !strings.Contains(err.Error(), "--keep-last") || strings.Contains(err.Error(), "retried") {
		t.Fatalf("gc --keep-last -1: %v\n%s", err, out)
	}

	// The plan: dev holds v8 and may go back to v7, staging holds v3 and
	// may go back to v2 (the last run's digest too); v1, v4, v5, v6 go.
	out, err := gc("--dry-run")
	if err != nil || !strings.Contains(out, "would be deleted") {
		t.Fatalf("gc --dry-run: %v\n%s", err, out)
	}
	for want, i := range map[string]int{"held by dev now": 8, "dev held it, 1 before its current digest": 7, "held by staging now": 3, "staging held it, 1 before": 2} {
		if line := lineOf(out, runs.ShortDigest(v[i])+"  image"); !strings.HasPrefix(line, "keep ") || !strings.Contains(line, want) {
			t.Errorf("the plan does not keep v%d (%s): %q\n%s", i, want, line, out)
		}
	}
	for _, i := range []int{1, 4, 5, 6} {
		if line := lineOf(out, runs.ShortDigest(v[i])+"  image"); !strings.HasPrefix(line, "delete ") || !strings.Contains(line, "held by no environment") {
			t.Errorf("the plan does not delete v%d: %q\n%s", i, line, out)
		}
		if !present(i) {
			t.Errorf("v%d is gone after a dry run", i)
		}
	}

	// While it deletes, dev is rolled back to v6, and a second gc of the
	// repository is asked for.
	var second error
	onDelete.Store(func() {
		if out, err := cliErr(t, append([]string{"rollback", "dev", repo, "--to", v[6], "--reason", "v8 and v7 leak memory", "--timeout", "1m"}, token...)...); err != nil {
			t.Errorf("roll dev back to v6 during gc: %v\n%s", err, out)
		}
		_, second = gc()
	})
	out = cli(t, append([]string{"gc", repo, "--keep-last", "1", "--keep-days", "0", "--json"}, token...)...)
	var rep api.GCReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if second == nil || !strings.Contains(second.Error(), "is running") || strings.Contains(second.Error(), "retried") {
		t.Errorf("a second gc at once: %v", second)
	}
	deleted := map[string]string{}
	for _, it := range rep.Items {
		if it.Action == api.GCDeleted {
			deleted[it.Digest] = it.Kind
		}
	}
	for _, i := range []int{1, 4, 5} {
		if deleted[v[i]] != "image" || present(i) {
			t.Errorf("v%d: deleted as %q, still in the registry: %v", i, deleted[v[i]], present(i))
		}
	}
	for _, i := range []int{2, 3, 6, 7, 8} {
		if !present(i) {
			t.Errorf("v%d was deleted", i)
		}
		if out, err := cliErr(t, "verify", repo+"@"+v[i], "--key", filepath.Join(dir, "digestline.pub")); err != nil {
			t.Errorf("verify v%d after gc: %v\n%s", i, err, out)
		}
	}
	if rep.Skipped == 0 || rep.Deleted < 3*3 { // each image with its signature and provenance at least
		t.Errorf("gc report: %d deleted, %d skipped\n%s", rep.Deleted, rep.Skipped, out)
	}
	var hist api.Page[api.HistoryEntry]
	if s.GetJSON(t, "/v1/history?digest="+v[1], &hist) != http.StatusOK || !strings.HasPrefix(historyKinds(hist.Items), "deleted") {
		t.Errorf("v1's history: %s", historyKinds(hist.Items))
	}
	if page := getPage(t, s.APIURL+"/digests/"+v[1]); !strings.Contains(page, "Deleted from <code>"+repo) || !strings.Contains(page, "held by no environment") {
		t.Errorf("v1's page does not say it was deleted:\n%s", page)
	}
	n := 0
	var evs []map[string]any
	s.GetJSON(t, "/v1/runs/"+rep.RunID, &evs) // a collection's run has no end event: its report is its end
	for _, ev := range evs {
		if ev["type"] == events.DigestDeleted.Type() {
			n++
		}
	}
	if n != rep.Deleted {
		t.Errorf("%d digest.deleted events for %d deletions", n, rep.Deleted)
	}
}

// lineOf is the first line of out that holds part ("" for none).
func lineOf(out, part string) string {
	for line := range strings.Lines(out) {
		if strings.Contains(line, part) {
			return line
		}
	}
	return ""
}

// TestScheduledGCIsADryRunUntilTurnedOn: the reporter's scheduled
// collection plans, keeps its plan as the repository's last report, and
// deletes nothing until the schedule says delete.
func TestScheduledGCIsADryRunUntilTurnedOn(t *testing.T) {
	dir := t.TempDir()
	pol := policyOf(t, "environments:\n  dev:\n    rollbackDepth: 0\n")
	host := fmt.Sprintf("127.0.0.1:%d", e2etest.FreePort(t))
	schedule := filepath.Join(dir, "gc.yaml")
	if err := os.WriteFile(schedule, fmt.Appendf(nil, "every: 1s\nrepositories:\n  - {repository: %s/team/app, keepLast: 0, keepDays: 0}\n", host), 0o644); err != nil {
		t.Fatal(err)
	}
	gcs, err := reporter.LoadGCSchedule(schedule)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := e2etest.StartStack(t, e2etest.WithRegistryAddr(host), e2etest.WithReporter(func(c *reporter.Config) { c.Policy, c.GC = pol, gcs }))
	v1 := s.ShipWith(t, "v1", "team/app:v1", false)
	s.ShipWith(t, "v2", "team/app:v2", false)
	var rep api.GCReport
	e2etest.WaitFor(t, "a scheduled plan that deletes v1", func() bool {
		return s.GetJSON(t, "/v1/gc/"+host+"/team/app", &rep) == http.StatusOK && slices.ContainsFunc(rep.Items, func(it api.GCItem) bool {
			return it.Digest == v1 && it.Kind == "image" && it.Action == api.GCDelete
		})
	})
	if !rep.DryRun || rep.Deleted != 0 || tagDigest(t, s, "team/app", v1) != v1 {
		t.Errorf("the scheduled collection deleted: dry run %v, %d deleted, v1 there: %v", rep.DryRun, rep.Deleted, tagDigest(t, s, "team/app", v1) == v1)
	}

	// A schedule that cannot be run says why at start.
	for body, says := range map[string]string{
		"every: 1s\n": "names no repository",
		"every: 1ms\nrepositories: [{repository: a.io/b}]\n":   "a second or more",
		"repositories: [{repository: 'not a repo!'}]\n":        "want registry/path",
		"repositories: [{repository: a.io/b, keep: 3}]\n":      "field keep not found",
		"repositories: [{repository: a.io/b, keepLast: -1}]\n": "0 or more",
	} {
		if err := os.WriteFile(schedule, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := reporter.LoadGCSchedule(schedule); err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("schedule %q: %v, want it to say %q", body, err, says)
		}
	}
}

// TestGCOnARegistryThatDeletesTagsOnly: where the registry refuses to
// delete a manifest by digest but deletes tags, gc untags what it would
// delete (the image's tags, its cosign and fallback tags) and says that
// the registry's own garbage collection must remove the manifests, which
// are still there; what it keeps keeps its tags.
func TestGCOnARegistryThatDeletesTagsOnly(t *testing.T) {
	t.Setenv("DIGESTLINE_API_TOKEN", "")
	dir := t.TempDir()
	pol := policyOf(t, "environments:\n  dev:\n    rollbackDepth: 0\n")
	s, _ := e2etest.StartStack(t, e2etest.WithSigningKey(t, dir), func(c *dev.Config) { c.Reporter.Policy = pol },
		e2etest.WithRegistryWrapper(registrytest.TagDeletesOnly))
	repo := s.RegistryAddr + "/team/app"
	v1 := s.ShipWith(t, "v1", "team/app:v1", false)
	v2 := s.ShipWith(t, "v2", "team/app:v2", false)
	out := cli(t, "gc", repo, "--keep-last", "0", "--keep-days", "0", "--api", s.APIURL, "--token-file", s.TokenFile)
	if !strings.Contains(out, "deletes tags only; its own garbage collection must remove them") {
		t.Fatalf("gc on a registry that deletes tags only:\n%s", out)
	}
	if line := lineOf(out, runs.ShortDigest(v1)+"  image"); !strings.HasPrefix(line, "untagged ") || !strings.Contains(line, "own garbage collection") {
		t.Errorf("v1's line: %q\n%s", line, out)
	}
	if tagDigest(t, s, "team/app", "v1") != "" || tagDigest(t, s, "team/app", v1) != v1 {
		t.Errorf("v1: its tag should be gone (%q), its manifest still there (%q)", tagDigest(t, s, "team/app", "v1"), tagDigest(t, s, "team/app", v1))
	}
	if tagDigest(t, s, "team/app", "v2") != v2 || tagDigest(t, s, "team/app", "dev") != v2 {
		t.Error("v2, which dev holds, lost a tag")
	}
}

// policyOf loads a policy file of body for the default chain.
func policyOf(t *testing.T, body string) *policy.Policy {
	t.Helper()
	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(file, reporter.DefaultEnvironments)
	if err != nil {
		t.Fatal(err)
	}
	return pol
}
