package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/digestline/digestline/cmd/digestline/internal/dev"
	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/policy"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/digestline/digestline/services/notifier"
	"github.com/digestline/digestline/services/reporter"
)

// TestAFailedDeploymentRollsBackOnce: deployers report their deployments
// in the promoted runs; in an environment whose policy says rollbackOn:
// failed, a failed one rolls back to the last digest reported deployed,
// once (the same report delivered again rolls nothing back), records the
// report as the cause, and pins the environment; and the team's webhook
// (the notifier in digestline dev) hears of the failure and the rollback.
func TestAFailedDeploymentRollsBackOnce(t *testing.T) {
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policyFile, []byte("environments:\n  dev:\n    rollbackOn: failed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(policyFile, reporter.DefaultEnvironments)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var heard []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Text string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		heard = append(heard, body.Text)
		mu.Unlock()
	}))
	defer hook.Close()
	s, _ := e2etest.StartStack(t, e2etest.WithReporter(func(c *reporter.Config) { c.Policy = pol }), func(c *dev.Config) {
		c.Notifications = []notifier.Rule{{Name: "team", Kinds: []string{notifier.KindRolledBack, notifier.KindDeployFailed}, URL: hook.URL, Format: notifier.FormatSlack}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	repo := s.RegistryAddr + "/team/app"
	// report sends what a deployer sends after deploying a run's promotion.
	report := func(runID, dgst, status, detail string) []byte {
		t.Helper()
		raw, err := runs.Events(ctx, s.JetStream, runID)
		if err != nil {
			t.Fatal(err)
		}
		var promoted event.Event
		for _, b := range raw {
			if ev, name, err := events.Parse(b); err == nil && name == events.Promoted {
				promoted = ev
			}
		}
		rep := events.DeploymentReport{Environment: "dev", Repository: repo, Digest: dgst, Deployer: "k8s-dev", Status: status, Detail: detail}
		ev, err := s.Bus.Emit(ctx, promoted, events.DeploymentReported, "k8s-dev/"+status, rep)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := ev.MarshalJSON()
		return body
	}
	shipped := func(content string) (string, string) {
		res, out, err := s.Ship(t, e2etest.SourceDir(t, content), "team/app:"+content)
		if err != nil {
			t.Fatalf("ship %s: %v\n%s", content, err, out)
		}
		return res.RunID, res.Promotion.Digest
	}
	run1, v1 := shipped("v1")
	report(run1, v1, events.DeployOK, "3/3 pods ready")
	run2, v2 := shipped("v2")
	failed := report(run2, v2, events.DeployFailed, "readiness probe failed")

	var rec api.PromotionRecord
	e2etest.WaitFor(t, "dev rolled back to v1", func() bool {
		return s.GetJSON(t, "/v1/promotions/dev/"+repo, &rec) == http.StatusOK && rec.Current != nil && rec.Current.Digest == v1
	})
	if c := rec.Current; !c.Rollback || c.Report == "" || !strings.Contains(c.Reason, "readiness probe failed") || !strings.Contains(c.RequestedBy, "automatic rollback (k8s-dev)") || c.PreviousDigest != v2 {
		t.Errorf("the automatic rollback's record: %+v", c)
	}
	var pins []api.Pin
	if s.GetJSON(t, "/v1/pins", &pins) != http.StatusOK || len(pins) != 1 || pins[0].Environment != "dev" || pins[0].Digest != v1 {
		t.Errorf("pins: %+v", pins)
	}

	// The same report again (a deployer's redelivery, stored anew): the
	// reporter handles it and rolls nothing back a second time.
	if _, err := s.JetStream.Publish(ctx, events.DeploymentReported.Subject(run2), failed); err != nil {
		t.Fatal(err)
	}
	e2etest.WaitFor(t, "the reporter to handle the report again", func() bool {
		c, err := s.JetStream.Consumer(ctx, events.StreamName, "reporter")
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	var hist api.Page[api.HistoryEntry]
	if s.GetJSON(t, "/v1/history?env=dev&limit=100", &hist) != http.StatusOK {
		t.Fatal("history")
	}
	count := map[string]int{}
	for _, e := range hist.Items {
		count[e.Kind]++
	}
	if count["rollback"] != 1 || count["pinned"] != 1 || count["deploy-failed"] != 1 || count["deployed"] != 1 || count["promoted"] != 2 {
		t.Errorf("dev's history: %v", count)
	}
	e2etest.WaitFor(t, "the webhook to hear of the failure and the rollback", func() bool {
		mu.Lock()
		defer mu.Unlock()
		all := strings.Join(heard, "\n")
		return len(heard) == 2 && strings.Contains(all, "deployment of "+repo+"@"+v2+" to dev failed, reported by k8s-dev: readiness probe failed") &&
			strings.Contains(all, "rolled back dev to "+repo+"@"+v1)
	})
	// The digest's page shows its deployment.
	var digestHist api.Page[api.HistoryEntry]
	if s.GetJSON(t, "/v1/history?digest="+v2+"&kind=deploy-failed", &digestHist) != http.StatusOK || len(digestHist.Items) != 1 ||
		digestHist.Items[0].Deployment.Detail != "readiness probe failed" {
		t.Errorf("v2's deployments: %+v", digestHist.Items)
	}
}
