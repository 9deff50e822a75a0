package builder

import (
	"os"
	"sync"
)

// keptWorkDirs is how many unpacked sources the builder keeps between
// builds: one for each build it runs at once (the router's concurrency).
const keptWorkDirs = 8

// workDirs are the directories object sources are unpacked in, kept from
// one build to the next: the next source is unpacked over the tree there
// (oci.ExtractTarOver), so a file both have is written over instead of
// made anew. Making files cost more than writing a small source: on ext4,
// with each source unpacked into a new directory and removed, the
// builder's part of a run was 4–10 ms of CPU, rising as the file system's
// recently deleted inodes piled up; 2–3 ms over a kept tree
// (BenchmarkLoad/paced on disk, docs/benchmarks.md), 1–2 ms with its
// layers built in memory too (pkg/oci's spill). One build has a
// directory at a time; those past keptWorkDirs are removed.
type workDirs struct {
	parent string // "": the system's temp dir
	mu     sync.Mutex
	free   []string
}

// take returns a directory for one build: one a build gave back, else a
// new one.
func (w *workDirs) take() (string, error) {
	w.mu.Lock()
	if n := len(w.free); n > 0 {
		dir := w.free[n-1]
		w.free = w.free[:n-1]
		w.mu.Unlock()
		return dir, nil
	}
	w.mu.Unlock()
	return os.MkdirTemp(w.parent, "digestline-src-*")
}

// give hands a build's directory back for the next; one more than the
// builder keeps is removed.
func (w *workDirs) give(dir string) {
	w.mu.Lock()
	keep := len(w.free) < keptWorkDirs
	if keep {
		w.free = append(w.free, dir)
	}
	w.mu.Unlock()
	if !keep {
		_ = os.RemoveAll(dir)
	}
}

// close removes the directories kept, as the builder stops.
func (w *workDirs) close() {
	w.mu.Lock()
	free := w.free
	w.free = nil
	w.mu.Unlock()
	for _, dir := range free {
		_ = os.RemoveAll(dir)
	}
}
