package main

import (
	"cmp"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/policy"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/digestline/digestline/services/reporter"
)

// TestShipsToOneTagLandInOrder: commits land close together on one branch,
// and CI ships each to app:dev, 4 at a time. None fails: each run is
// promoted, or superseded by a newer request for the tag; the tag and the
// record end at the newest request's digest, and the history's chain of
// previous digests is unbroken. The API lists the superseded runs, and
// their page says which run overtook them. (make bench runs 200, 8 at a
// time; the system tests run it on a 3-node cluster, and with the pusher
// killed.)
func TestShipsToOneTagLandInOrder(t *testing.T) {
	t.Parallel()
	s, _ := e2etest.StartStack(t)
	target := s.RegistryAddr + "/team/app:dev"
	n, at := e2etest.OneTagRuns(t)
	ids := e2etest.ShipToOneTag(t, s.Bus, target, n, at)
	promoted, superseded := e2etest.LandedInOrder(t, s.APIURL, target, "dev", ids)
	t.Logf("%d promoted, %d superseded", promoted, superseded)

	// The lists are filed by the reporter's run-index consumer, one run's
	// end at a time, moments after the run's own summary answers: with
	// 200 runs ending within seconds the list catches up after them.
	var page api.Page[runs.Run]
	listed := func() bool {
		page = api.Page[runs.Run]{}
		return s.GetJSON(t, "/v1/runs?status=superseded&limit=500", &page) == http.StatusOK && len(page.Items) >= superseded
	}
	e2etest.WaitFor(t, fmt.Sprintf("GET /v1/runs?status=superseded to list the %d superseded runs", superseded), listed)
	if len(page.Items) != superseded {
		t.Fatalf("GET /v1/runs?status=superseded: %d runs, want %d", len(page.Items), superseded)
	}
	if superseded == 0 {
		return
	}
	run := page.Items[0]
	resp, err := http.Get(s.APIURL + "/runs/" + run.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if run.Superseded == nil || !strings.Contains(string(body), `<dt>superseded</dt><dd>by run <a href="/runs/`+run.Superseded.By+`">`) ||
		!strings.Contains(string(body), "nothing failed") || strings.Contains(string(body), `class="why"`) {
		t.Errorf("run %s's page does not link the run that superseded it, or reads as a failure (%+v):\n%s", run.ID, run.Superseded, body)
	}
	if list := getPage(t, s.APIURL+"/runs?status=superseded"); !strings.Contains(list, `<div class="note">superseded by run <a href="/runs/`+run.Superseded.By+`">`) {
		t.Errorf("the page of superseded runs does not link the run that superseded %s:\n%s", run.ID, list)
	}
}

// TestQueuedEnvironmentTakesEveryDigest: an environment whose policy says
// promotions: queue takes every digest, in the order requested. Twelve
// commits shipped 4 at a time all end promoted (none superseded), and
// dev's history holds them in request order, each the previous of the
// next.
func TestQueuedEnvironmentTakesEveryDigest(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, []byte("environments:\n  dev:\n    promotions: queue\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(file, reporter.DefaultEnvironments)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := e2etest.StartStack(t, e2etest.WithReporter(func(c *reporter.Config) { c.Policy = pol }))
	ids := e2etest.ShipToOneTag(t, s.Bus, s.RegistryAddr+"/team/app:build", 12, 4)
	var landed []runs.Run
	for _, id := range ids {
		var r runs.Run
		e2etest.WaitFor(t, "run "+id+"'s summary", func() bool {
			return s.GetJSON(t, "/v1/runs/"+id+"/summary", &r) == http.StatusOK && r.Done()
		})
		if r.Status != runs.Promoted {
			t.Errorf("run %s ended %s (%s), want promoted", id, r.Status, r.Detail)
		}
		landed = append(landed, r)
	}
	slices.SortFunc(landed, func(a, b runs.Run) int { return cmp.Or(a.Started.Compare(b.Started), strings.Compare(a.ID, b.ID)) })
	previous := ""
	for _, r := range landed {
		if r.Promotion == nil {
			continue
		}
		if r.Promotion.PreviousDigest != previous {
			t.Errorf("run %s's promotion follows %s, want %s: the one requested before it", r.ID, r.Promotion.PreviousDigest, cmp.Or(previous, "none"))
		}
		previous = r.Promotion.Digest
	}
	if cur := s.Current(t, "dev", s.RegistryAddr+"/team/app"); cur != previous {
		t.Errorf("dev holds %s, want the newest request's %s", cur, previous)
	}
}
