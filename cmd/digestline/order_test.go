package main

import (
	"testing"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
)

// TestShipsToOneTagLandInOrder: commits land close together on one branch,
// and CI ships each to app:dev, 4 at a time. None fails: each run is
// promoted, or superseded by a newer request for the tag; the tag and the
// record end at the newest request's digest, and the history's chain of
// previous digests is unbroken. (make bench runs 200, 8 at a time; the
// system tests run it on a 3-node cluster, and with the pusher killed.)
func TestShipsToOneTagLandInOrder(t *testing.T) {
	t.Parallel()
	s, _ := e2etest.StartStack(t)
	target := s.RegistryAddr + "/team/app:dev"
	n, at := e2etest.OneTagRuns(t)
	ids := e2etest.ShipToOneTag(t, s.Bus, target, n, at)
	promoted, superseded := e2etest.LandedInOrder(t, s.APIURL, target, "dev", ids)
	t.Logf("%d promoted, %d superseded", promoted, superseded)
}
