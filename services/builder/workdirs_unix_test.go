//go:build unix

package builder

import (
	"os"
	"path/filepath"
	"testing"
)

// TestWorkDirsOfACrashedBuilderAreRemoved: a builder that starts removes
// what a builder that crashed left in the work dir, and leaves alone the
// directories of one that runs (a replica sharing the work dir), and
// anything else there.
func TestWorkDirsOfACrashedBuilderAreRemoved(t *testing.T) {
	parent := t.TempDir()
	crashed, err := openWorkDirs(parent)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := crashed.take()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "main.go"), []byte("package main\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	crashed.lock.Close() // its process ends: the system lets go of its lock
	running, err := openWorkDirs(parent)
	if err != nil {
		t.Fatal(err)
	}
	defer running.close()
	inUse, err := running.take()
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(parent, "someone-elses")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(crashed.dir); !os.IsNotExist(err) {
		t.Fatalf("the crashed builder's directory is still there: %v", err)
	}
	started, err := openWorkDirs(parent)
	if err != nil {
		t.Fatal(err)
	}
	defer started.close()
	for _, dir := range []string{inUse, other, started.dir} {
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("%s was removed: %v", dir, err)
		}
	}
}
