// Package tooltest finds the external programs some tests run — peer
// tools (crane, oras, regctl, skopeo), real registries (docker-registry),
// Jaeger — on PATH or where `make tools` puts them (.digestline/tools).
// Outside `make test` a missing one skips its test, saying how to get it;
// `make test` sets DIGESTLINE_REQUIRE_TOOLS=1, which makes that a failure.
package tooltest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Find returns the path of bin, or skips (fails, under
// DIGESTLINE_REQUIRE_TOOLS=1) the test when it is not installed.
func Find(t testing.TB, bin string) string {
	t.Helper()
	if p, err := exec.LookPath(bin); err == nil {
		return p
	}
	if root := workspaceRoot(); root != "" {
		p := filepath.Join(root, ".digestline", "tools", bin)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	msg := bin + " is not installed: run make tools (scripts/tools.sh), or make test, which installs it"
	if os.Getenv("DIGESTLINE_REQUIRE_TOOLS") == "1" {
		t.Fatal(msg + " (DIGESTLINE_REQUIRE_TOOLS=1 makes this a failure)")
	}
	t.Skip(msg)
	return ""
}

// workspaceRoot is the nearest directory above the working directory (a
// test's package directory) that holds go.work, or "".
func workspaceRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
