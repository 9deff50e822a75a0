// Package tooltest finds the external programs some tests run — peer
// tools (crane, oras, regctl, skopeo), real registries (docker-registry),
// Jaeger — on PATH or where `make tools` puts them (.digestline/tools).
// Outside `make test` a missing one skips its test, saying how to get it;
// `make test` sets DIGESTLINE_REQUIRE_TOOLS=1, which makes that a failure.
// `make test` installs the tools beside the tests (scripts/tools.sh
// --background); while that installer runs, a test waits for its tool.
package tooltest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// installWait bounds how long a test waits for the installer.
const installWait = 30 * time.Minute

// Find returns the path of bin, or skips (fails, under
// DIGESTLINE_REQUIRE_TOOLS=1) the test when it is not installed. While
// scripts/tools.sh is installing the tools, it waits for bin to arrive.
func Find(t testing.TB, bin string) string {
	t.Helper()
	root := workspaceRoot()
	deadline, said := time.Now().Add(installWait), false
	for {
		if p, ok := lookup(root, bin); ok {
			return p
		}
		if !installing(root) || time.Now().After(deadline) {
			break
		}
		if !said {
			t.Logf("waiting for %s: scripts/tools.sh is installing it", bin)
			said = true
		}
		time.Sleep(2 * time.Second)
	}
	msg := bin + " is not installed: run make tools (scripts/tools.sh), or make test, which installs it (see .digestline/tools/install.log)"
	if os.Getenv("DIGESTLINE_REQUIRE_TOOLS") == "1" {
		t.Fatal(msg + " (DIGESTLINE_REQUIRE_TOOLS=1 makes this a failure)")
	}
	t.Skip(msg)
	return ""
}

// lookup finds bin on PATH or in the workspace's .digestline/tools.
func lookup(root, bin string) (string, bool) {
	if p, err := exec.LookPath(bin); err == nil {
		return p, true
	}
	if root != "" {
		p := filepath.Join(root, ".digestline", "tools", bin)
		if _, err := os.Stat(p); err == nil {
			return p, true
		}
	}
	return "", false
}

// installing reports whether scripts/tools.sh is at work: it holds the
// lock on .digestline/tools/.lock while it installs.
func installing(root string) bool {
	if root == "" {
		return false
	}
	f, err := os.Open(filepath.Join(root, ".digestline", "tools", ".lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
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
