package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/registry"
)

// TestRegistryProbe: digestline registry probe says what the dev registry
// supports, as text and as JSON.
func TestRegistryProbe(t *testing.T) {
	s, _ := e2etest.StartStack(t)
	if _, out, err := s.Ship(t, e2etest.SourceDir(t, "probed"), "team/probed:1"); err != nil {
		t.Fatalf("ship: %v\n%s", err, out)
	}
	var caps registry.Capabilities
	if err := json.Unmarshal([]byte(cli(t, "registry", "probe", s.RegistryAddr+"/team/probed", "--json")), &caps); err != nil {
		t.Fatal(err)
	}
	if caps.Auth != "none" || caps.ReferrersAPI.Support != registry.Yes || caps.ChunkedUploads.Support != registry.Yes || caps.DigestHeader.Support != registry.Yes {
		t.Fatalf("probe of the dev registry: %+v", caps)
	}
	if out := cli(t, "registry", "probe", s.RegistryAddr); !strings.Contains(out, "referrers API            yes") {
		t.Fatalf("probe printed:\n%s", out)
	}
}
