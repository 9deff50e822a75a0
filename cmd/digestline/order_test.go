package main

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/runs"
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

	var page api.Page[runs.Run]
	if s.GetJSON(t, "/v1/runs?status=superseded&limit=500", &page) != http.StatusOK || len(page.Items) != superseded {
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
	if run.Superseded == nil || !strings.Contains(string(body), "superseded by run "+run.Superseded.By) {
		t.Errorf("run %s's page does not say which run superseded it (%+v)", run.ID, run.Superseded)
	}
}
