package oci

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
)

// ExtractTarOver makes dir hold exactly the tree ExtractTar would unpack
// into an empty directory, reusing what dir holds already: a regular file
// the tarball has too is written over in place, a directory the tarball
// has too is kept, and whatever the tarball does not have is removed. A
// builder that unpacks each source over the tree of the build before
// makes no new file for a path both have: making files (an inode each)
// cost more than writing them, on ext4 most of all, where each new inode
// is searched for past the ones deleted lately. The tarball is as
// untrusted as ExtractTar's, and dir's earlier tree is not trusted either:
// a symlink it left is never followed.
func ExtractTarOver(r io.Reader, dir string, lim ExtractLimits) error {
	x, err := newExtractor(dir, lim)
	if err != nil {
		return err
	}
	defer x.root.Close()
	if x.umask, err = processUmask(x); err != nil {
		return err
	}
	x.over, x.kept, x.links = true, map[string]bool{}, map[string]bool{}
	if err := x.apply(r); err != nil {
		return err
	}
	return x.prune()
}

// ErrNotOver is a tarball ExtractTarOver cannot unpack over a tree: one
// with an entry under a symlink it made (ExtractTar follows that symlink,
// which the record of what this tarball wrote would not). Unpack it with
// ExtractTar into an empty directory instead.
var ErrNotOver = errors.New("the tarball writes through a symlink of its own: unpack it into an empty directory")

// makeRoom clears what the earlier tree has at name and above it for an
// entry of type typ: each directory above name that this tarball has not
// written must be a directory (not a symlink the earlier tree left), and
// at name only a directory (for a directory) or a regular file of one link
// (for a regular file: a file of two links would write the other too) is
// kept. What this tarball wrote already is left as ExtractTar leaves it.
func (x *extractor) makeRoom(name string, typ byte) error {
	parts := strings.Split(name, "/")
	exists := true // the earlier tree may have something at this depth
	for i := 1; i <= len(parts); i++ {
		p, last := path.Join(parts[:i]...), i == len(parts)
		switch {
		case !last && x.links[p]:
			return fmt.Errorf("%w (entry %q)", ErrNotOver, name)
		case x.kept[p]:
			continue
		}
		x.kept[p] = true
		if last && typ == tar.TypeSymlink {
			x.links[p] = true
		}
		if !exists {
			continue
		}
		fi, err := x.root.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			exists = false
			continue
		}
		if err != nil {
			return err
		}
		if exists, err = x.keep(p, fi, last, typ); err != nil {
			return err
		}
	}
	return nil
}

// keep keeps the earlier tree's fi at p, which is the entry's own path
// (last) or above it, or removes it; it reports what is left there.
func (x *extractor) keep(p string, fi fs.FileInfo, last bool, typ byte) (bool, error) {
	switch {
	case fi.IsDir() && (!last || typ == tar.TypeDir):
		if dirMode := 0o755 &^ x.umask; fi.Mode().Perm() != dirMode { // as MkdirAll makes it
			return true, x.root.Chmod(p, dirMode)
		}
		return true, nil
	case last && typ == tar.TypeReg && fi.Mode().IsRegular() && singleLink(fi):
		return true, nil // written over, and its mode set
	}
	return false, x.root.RemoveAll(p)
}

// prune removes what the earlier tree has that the tarball did not write.
func (x *extractor) prune() error {
	var stale []string
	err := fs.WalkDir(x.root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case p == "." || x.kept[p]:
			return nil
		}
		stale = append(stale, p)
		if d.IsDir() {
			return fs.SkipDir
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("clear the earlier tree: %w", err)
	}
	for _, p := range stale {
		if err := x.root.RemoveAll(p); err != nil {
			return fmt.Errorf("clear the earlier tree: %w", err)
		}
	}
	return nil
}

// umaskOnce is the process's umask, found once: a file made with every
// permission shows what the umask takes away. Go can only read the umask
// by setting it, which would race with every file the process makes.
var umaskOnce struct {
	sync.Once
	mask fs.FileMode
	err  error
}

func processUmask(x *extractor) (fs.FileMode, error) {
	umaskOnce.Do(func() {
		const probe = ".digestline-umask"
		_ = x.root.RemoveAll(probe) // left by a process that stopped here
		f, err := x.root.OpenFile(probe, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o777)
		if err != nil {
			umaskOnce.err = fmt.Errorf("find the umask: %w", err)
			return
		}
		fi, err := f.Stat()
		_ = f.Close()
		_ = x.root.Remove(probe)
		if err != nil {
			umaskOnce.err = fmt.Errorf("find the umask: %w", err)
			return
		}
		umaskOnce.mask = 0o777 &^ fi.Mode().Perm()
	})
	return umaskOnce.mask, umaskOnce.err
}
