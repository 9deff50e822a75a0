package builder

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// keptWorkDirs is how many unpacked sources the builder keeps between
// builds: one for each build it runs at once (the router's concurrency).
const keptWorkDirs = 8

// workDirPrefix names a builder's own directory under the work dir.
const workDirPrefix = "digestline-builder-"

// workDirs are the directories a builder unpacks sources and checks out
// revisions in, all under a directory of its own, which it holds a lock on
// while it runs: the system lets go of the lock when the process ends, so a
// builder that starts removes what a builder that crashed left (sweep),
// never what a running one (a replica sharing the work dir) is using.
//
// Object sources are unpacked in directories kept from one build to the
// next: the next source is unpacked over the tree there
// (oci.ExtractTarOver), so a file both have is written over instead of
// made anew. Making files cost more than writing a small source: on ext4,
// with each source unpacked into a new directory and removed, the
// builder's part of a run was 4–10 ms of CPU, rising as the file system's
// recently deleted inodes piled up; 2–3 ms over a kept tree
// (BenchmarkLoad/paced on disk, docs/benchmarks.md), 1–2 ms with its
// layers built in memory too (pkg/oci's spill). One build has a
// directory at a time; those past keptWorkDirs are removed.
type workDirs struct {
	dir  string
	lock *os.File // dir, locked
	mu   sync.Mutex
	free []string
}

// openWorkDirs removes what builders that are gone left under parent (""
// is the system's temp dir), and makes this builder's directory there.
func openWorkDirs(parent string) (*workDirs, error) {
	if parent == "" {
		parent = os.TempDir()
	}
	sweep(parent)
	// A builder sweeping at the same time may take the new directory for
	// a crashed builder's before it is locked: it is then made again.
	for range 3 {
		dir, err := os.MkdirTemp(parent, workDirPrefix+"*")
		if err != nil {
			return nil, fmt.Errorf("make the builder's work directory (set DIGESTLINE_WORK_DIR to a directory it may write): %w", err)
		}
		f, locked, err := lockDir(dir)
		if err != nil {
			return nil, err
		}
		if locked {
			return &workDirs{dir: dir, lock: f}, nil
		}
	}
	return nil, fmt.Errorf("make the builder's work directory in %s: removed by another builder three times over", parent)
}

// lockDir locks dir for this process, unless another holds it (locked
// false) or it was removed meanwhile (locked false: a sweeper took it).
func lockDir(dir string) (f *os.File, locked bool, err error) {
	f, err = os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("lock the builder's work directory: %w", err)
	}
	if locked, err = tryLock(f); err != nil || !locked {
		f.Close()
		return nil, false, err
	}
	// Locked, but perhaps after a sweeper removed it and let go.
	opened, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, false, err
	}
	if now, err := os.Lstat(dir); err != nil || !os.SameFile(opened, now) {
		f.Close()
		return nil, false, nil
	}
	return f, true, nil
}

// sweep removes the directories under parent of builders that stopped
// without removing theirs: those no process holds a lock on.
func sweep(parent string) {
	if !canLock {
		return // a lock cannot tell a crashed builder's from a running one's
	}
	entries, err := os.ReadDir(parent)
	if err != nil {
		return // nothing to sweep: making the builder's own says why
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), workDirPrefix) {
			continue
		}
		dir := filepath.Join(parent, e.Name())
		if f, locked, err := lockDir(dir); err == nil && locked {
			_ = os.RemoveAll(dir)
			f.Close()
		}
	}
}

// take returns a directory for one build to unpack a source over: one a
// build gave back, else a new one.
func (w *workDirs) take() (string, error) {
	w.mu.Lock()
	if n := len(w.free); n > 0 {
		dir := w.free[n-1]
		w.free = w.free[:n-1]
		w.mu.Unlock()
		return dir, nil
	}
	w.mu.Unlock()
	return os.MkdirTemp(w.dir, "src-*")
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

// temp returns a new directory for one build, and what removes it.
func (w *workDirs) temp() (string, func(), error) {
	dir, err := os.MkdirTemp(w.dir, "tmp-*")
	if err != nil {
		return "", nil, err
	}
	return dir, func() { _ = os.RemoveAll(dir) }, nil
}

// close removes the builder's directory and everything in it, as the
// builder stops.
func (w *workDirs) close() {
	w.mu.Lock()
	w.free = nil
	w.mu.Unlock()
	_ = os.RemoveAll(w.dir)
	w.lock.Close()
}
