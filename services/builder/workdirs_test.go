package builder

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestWorkDirsAreKeptAndRemoved: a build gets back a directory an earlier
// build gave back; past keptWorkDirs a directory given back is removed,
// and the builder leaves nothing behind as it stops.
func TestWorkDirsAreKeptAndRemoved(t *testing.T) {
	parent := t.TempDir()
	w, err := openWorkDirs(parent)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for range keptWorkDirs + 2 { // as many builds at once
		dir, err := w.take()
		if err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, dir)
	}
	tmp, remove, err := w.temp() // and one more, not kept
	if err != nil {
		t.Fatal(err)
	}
	remove()
	for _, dir := range dirs {
		w.give(dir)
	}
	if left, _ := os.ReadDir(w.dir); len(left) != keptWorkDirs || slices.ContainsFunc(left, func(e os.DirEntry) bool { return filepath.Join(w.dir, e.Name()) == tmp }) {
		t.Fatalf("%d directories kept, want %d", len(left), keptWorkDirs)
	}
	again, err := w.take()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(dirs, again) {
		t.Fatalf("a build got a new directory %s with %d kept", again, keptWorkDirs)
	}
	w.give(again)
	w.close()
	if left, _ := os.ReadDir(parent); len(left) != 0 {
		t.Fatalf("%d directories left as the builder stopped", len(left))
	}
}
