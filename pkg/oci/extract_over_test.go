package oci_test

import (
	"archive/tar"
	"errors"
	"fmt"
	"io/fs"
	stdmaps "maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/digestline/digestline/pkg/oci"
)

// snapshot is a tree as a layer sees it: each path's type, permissions,
// content or link target.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			out[rel] = "symlink " + target
			return err
		case fi.IsDir():
			out[rel] = fmt.Sprintf("dir %o", fi.Mode().Perm())
		default:
			body, err := os.ReadFile(p)
			out[rel] = fmt.Sprintf("file %o %q", fi.Mode().Perm(), body)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// overIsFresh unpacks each tarball over the one before in one directory,
// and checks that the tree is then what ExtractTar unpacks into an empty
// directory, path for path.
func overIsFresh(t *testing.T, trees ...[]entry) {
	t.Helper()
	over := t.TempDir()
	for i, tree := range trees {
		if err := oci.ExtractTarOver(tarball(t, tree...), over, oci.DefaultExtractLimits); err != nil {
			t.Fatalf("tree %d over tree %d: %v", i, i-1, err)
		}
		fresh := t.TempDir()
		if err := oci.ExtractTar(tarball(t, tree...), fresh, oci.DefaultExtractLimits); err != nil {
			t.Fatalf("tree %d: %v", i, err)
		}
		got, want := snapshot(t, over), snapshot(t, fresh)
		if !stdmaps.Equal(got, want) {
			t.Fatalf("tree %d over tree %d:\n got %v\nwant %v", i, i-1, got, want)
		}
	}
}

func mode(e entry, m int64) entry { e.hdr.Mode = m; return e }

// TestExtractTarOverLeavesTheTarballsTree: unpacked over another tree,
// a tarball leaves what it leaves in an empty directory, whatever was
// there: the earlier tree's files go or are written over, a symlink it
// left is not followed, a file it linked twice is not written through.
func TestExtractTarOverLeavesTheTarballsTree(t *testing.T) {
	t.Parallel()
	cases := map[string][][]entry{
		"stale files and directories go": {
			{file("a/b/c", "1"), file("d", "2"), dir("e")},
			{file("a/x", "3")},
		},
		"files written over, with their new modes": {
			{mode(file("bin/app", "v1"), 0o755), file("data", "one")},
			{mode(file("bin/app", "v2, longer"), 0o644), mode(file("data", "2"), 0o600)},
			{mode(file("bin/app", "v3"), 0o755), file("data", "three")},
		},
		"a file becomes a directory, and back": {
			{file("x", "file")},
			{file("x/y", "under")},
			{file("x", "file again")},
		},
		"a directory the earlier tree linked elsewhere is not followed": {
			{file("real/keep", "k"), symlink("a", "real")},
			{file("real/keep", "k"), file("a/f", "mine")},
		},
		"a symlink replaces a file and a directory": {
			{file("l", "file"), file("m/n", "x")},
			{symlink("l", "m"), symlink("m", "elsewhere")},
			{file("l", "back"), dir("m")},
		},
		"a file of two names is not written through": {
			{file("x", "shared"), hardlink("y", "x")},
			{file("x", "new"), file("y", "other")},
			{file("y", "again")},
		},
		"directories get their mode back": {
			{file("d/f", "1")},
			{file("d/f", "2")},
		},
	}
	for name, trees := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if name == "directories get their mode back" {
				// A build step that changed a directory's mode: the next
				// tree has the mode a new directory gets.
				over := t.TempDir()
				if err := oci.ExtractTarOver(tarball(t, trees[0]...), over, oci.DefaultExtractLimits); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(filepath.Join(over, "d"), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := oci.ExtractTarOver(tarball(t, trees[1]...), over, oci.DefaultExtractLimits); err != nil {
					t.Fatal(err)
				}
				fresh := t.TempDir()
				if err := oci.ExtractTar(tarball(t, trees[1]...), fresh, oci.DefaultExtractLimits); err != nil {
					t.Fatal(err)
				}
				if got, want := snapshot(t, over), snapshot(t, fresh); !stdmaps.Equal(got, want) {
					t.Fatalf("got %v, want %v", got, want)
				}
				return
			}
			overIsFresh(t, trees...)
		})
	}
}

// TestExtractTarOverRefusesWhatItCannotDo: a hardlink to a file only the
// earlier tree has is refused (it would carry that tree's content into
// this one); an entry under the tarball's own symlink is ErrNotOver.
func TestExtractTarOverRefusesWhatItCannotDo(t *testing.T) {
	t.Parallel()
	over := t.TempDir()
	if err := oci.ExtractTarOver(tarball(t, file("secret", "earlier build's")), over, oci.DefaultExtractLimits); err != nil {
		t.Fatal(err)
	}
	err := oci.ExtractTarOver(tarball(t, hardlink("mine", "secret")), over, oci.DefaultExtractLimits)
	if !errors.Is(err, oci.ErrUnsafeEntry) || !strings.Contains(err.Error(), "secret") {
		t.Errorf("a hardlink to the earlier tree's file: %v", err)
	}
	err = oci.ExtractTarOver(tarball(t, dir("real"), symlink("a", "real"), file("a/f", "x")), over, oci.DefaultExtractLimits)
	if !errors.Is(err, oci.ErrNotOver) {
		t.Errorf("an entry under the tarball's own symlink: %v", err)
	}
}

// TestExtractTarOverAnyTreeOverAnother: random trees of a few names, each
// unpacked over the one before, are each what an empty directory gets.
func TestExtractTarOverAnyTreeOverAnother(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"a", "b", "a/b", "a/c", "b/a", "a/b/c", "c"}
	var trees [][]entry
	for range 200 {
		var tree []entry
		notDirs := map[string]bool{} // this tree's files and symlinks
		for _, n := range names {
			// An entry under a file or a symlink of this tree cannot be
			// written: leave it out, as a tarball of a real tree would.
			if rng.IntN(2) == 0 || under(n, notDirs) {
				continue
			}
			var e entry
			switch rng.IntN(4) {
			case 0:
				e = dir(n)
			case 1:
				e = symlink(n, names[rng.IntN(len(names))])
			default:
				e = mode(file(n, fmt.Sprint(rng.IntN(3))), []int64{0o644, 0o755, 0o600}[rng.IntN(3)])
			}
			notDirs[n] = e.hdr.Typeflag != tar.TypeDir
			tree = append(tree, e)
		}
		trees = append(trees, tree)
	}
	overIsFresh(t, trees...)
}

// under reports whether a path above n is one of notDirs.
func under(n string, notDirs map[string]bool) bool {
	parts := strings.Split(n, "/")
	for i := 1; i < len(parts); i++ {
		if notDirs[strings.Join(parts[:i], "/")] {
			return true
		}
	}
	return false
}
