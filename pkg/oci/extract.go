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
)

// ErrUnsafeEntry is wrapped by every refusal of ExtractTar.
var ErrUnsafeEntry = errors.New("unsafe tar entry")

// ExtractLimits bound what an untrusted tarball may write.
type ExtractLimits struct {
	MaxFileSize  int64 // per regular file
	MaxTotalSize int64 // all regular files together
	MaxEntries   int
}

// DefaultExtractLimits are generous for source trees and stop absurd inputs.
var DefaultExtractLimits = ExtractLimits{MaxFileSize: 8 << 30, MaxTotalSize: 32 << 30, MaxEntries: 1_000_000}

// ExtractTar unpacks an untrusted tarball into dir, refusing any entry that
// could land outside it: absolute or ".." paths, symlinks and hardlinks that
// point out, device files, and sizes over the limits. Every write goes through
// an os.Root, so even a symlink planted by an earlier entry cannot be followed
// out of dir. The error names the offending entry.
func ExtractTar(r io.Reader, dir string, lim ExtractLimits) error {
	x, err := newExtractor(dir, lim)
	if err != nil {
		return err
	}
	defer x.root.Close()
	return x.apply(r)
}

// extractor writes tar entries under one root, safely, keeping count
// against its limits across every tarball it applies.
type extractor struct {
	root    *os.Root
	lim     ExtractLimits
	total   int64
	entries int
	// layers turns on image-layer semantics: whiteouts delete what lower
	// layers wrote, absolute symlinks are allowed (they are absolute within
	// the root filesystem, and the os.Root never follows them out), and an
	// entry replaces whatever a lower layer left at its path.
	layers  bool
	written map[string]bool // paths the current layer wrote (an opaque directory keeps them)
	// over turns on unpacking over an earlier tree (ExtractTarOver): kept
	// holds what this tarball wrote and the directories above it, and
	// umask is the process's (a file written over gets the mode a new
	// file would have).
	over  bool
	kept  map[string]bool
	links map[string]bool // the symlinks this tarball made
	umask fs.FileMode
}

func newExtractor(dir string, lim ExtractLimits) (*extractor, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &extractor{root: root, lim: lim}, nil
}

// apply writes one tar stream.
func (x *extractor) apply(r io.Reader) error {
	x.written = map[string]bool{}
	tr := tar.NewReader(r)
	for ; ; x.entries++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tarball: %w", err)
		}
		if x.entries >= x.lim.MaxEntries {
			return fmt.Errorf("%w: more than %d entries", ErrUnsafeEntry, x.lim.MaxEntries)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue // archive-wide metadata (git archive stores the commit id here), not an entry
		}
		name, err := cleanEntryName(hdr.Name)
		if err != nil {
			return err
		}
		if name == "" {
			continue // the archive's own root
		}
		if err := x.entry(tr, hdr, name); err != nil {
			return err
		}
	}
}

// entry writes one entry at its cleaned name.
func (x *extractor) entry(tr *tar.Reader, hdr *tar.Header, name string) error {
	refuse := func(why string) error { return fmt.Errorf("%w %q: %s", ErrUnsafeEntry, hdr.Name, why) }
	dir, base := path.Split(name)
	dir = path.Clean(dir)
	if x.layers && strings.HasPrefix(base, whiteoutPrefix) {
		return x.whiteout(dir, base, refuse)
	}
	if x.over {
		if err := x.makeRoom(name, hdr.Typeflag); errors.Is(err, ErrNotOver) {
			return err
		} else if err != nil {
			return refuse(err.Error())
		}
	}
	if err := x.root.MkdirAll(dir, 0o755); err != nil && dir != "." {
		return refuse(err.Error())
	}
	if x.layers {
		if err := x.replace(name, hdr.Typeflag == tar.TypeDir); err != nil {
			return refuse(err.Error())
		}
		x.written[name] = true
	}
	mode := os.FileMode(hdr.Mode) & os.ModePerm
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := x.root.MkdirAll(name, 0o755); err != nil {
			return refuse(err.Error())
		}
	case tar.TypeReg:
		if hdr.Size < 0 || hdr.Size > x.lim.MaxFileSize {
			return refuse(fmt.Sprintf("size %d exceeds the limit of %d bytes", hdr.Size, x.lim.MaxFileSize))
		}
		if x.total += hdr.Size; x.total > x.lim.MaxTotalSize {
			return refuse(fmt.Sprintf("total size exceeds the limit of %d bytes", x.lim.MaxTotalSize))
		}
		f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode|0o600)
		if err != nil {
			return refuse(err.Error())
		}
		if x.over { // the mode a new file gets: a file written over keeps its own
			err = f.Chmod((mode | 0o600) &^ x.umask)
		}
		if err == nil {
			_, err = io.Copy(f, io.LimitReader(tr, hdr.Size))
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("extract %q: %w", hdr.Name, err)
		}
	case tar.TypeSymlink:
		target := hdr.Linkname
		if (path.IsAbs(target) && !x.layers) || (!path.IsAbs(target) && escapes(path.Join(path.Dir(name), target))) {
			return refuse(fmt.Sprintf("symlink to %q points outside the root", target))
		}
		if err := x.root.Symlink(target, name); err != nil {
			return refuse(err.Error())
		}
	case tar.TypeLink:
		target, err := cleanEntryName(hdr.Linkname)
		if err != nil || target == "" {
			return refuse(fmt.Sprintf("hardlink to %q points outside the root", hdr.Linkname))
		}
		if x.over && !x.kept[target] { // not the earlier tree's file
			return refuse(fmt.Sprintf("hardlink to %q, which the tarball has not written", hdr.Linkname))
		}
		if err := x.root.Link(target, name); err != nil {
			return refuse(err.Error())
		}
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return refuse("device and fifo entries are not allowed")
	default:
		return refuse(fmt.Sprintf("unsupported entry type %q", hdr.Typeflag))
	}
	return nil
}

// OCI whiteouts: ".wh.NAME" deletes NAME from lower layers; ".wh..wh..opq"
// empties its directory of what lower layers put there.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

func (x *extractor) whiteout(dir, base string, refuse func(string) error) error {
	if base == whiteoutOpaque {
		entries, err := fs.ReadDir(x.root.FS(), dir)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return refuse(err.Error())
		}
		for _, e := range entries {
			if p := path.Join(dir, e.Name()); !x.written[p] {
				if err := x.root.RemoveAll(p); err != nil {
					return refuse(err.Error())
				}
			}
		}
		return nil
	}
	target := strings.TrimPrefix(base, whiteoutPrefix)
	if target == "" || target == "." || target == ".." || strings.Contains(target, "/") {
		return refuse("a whiteout must name one entry of its directory")
	}
	if err := x.root.RemoveAll(path.Join(dir, target)); err != nil {
		return refuse(err.Error())
	}
	return nil
}

// replace clears what a lower layer left at name, unless both are
// directories (a directory entry then only updates the one there).
func (x *extractor) replace(name string, isDir bool) error {
	fi, err := x.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if isDir && fi.IsDir() {
		return nil
	}
	return x.root.RemoveAll(name)
}

// cleanEntryName returns the entry's path relative to the root, or an error
// when it is absolute or climbs out with "..".
func cleanEntryName(name string) (string, error) {
	if path.IsAbs(name) || strings.HasPrefix(name, `\`) {
		return "", fmt.Errorf("%w %q: absolute path", ErrUnsafeEntry, name)
	}
	clean := path.Clean(name)
	if escapes(clean) {
		return "", fmt.Errorf("%w %q: path climbs out of the root with ..", ErrUnsafeEntry, name)
	}
	if clean == "." {
		return "", nil
	}
	return clean, nil
}

func escapes(clean string) bool {
	clean = path.Clean(clean)
	return clean == ".." || strings.HasPrefix(clean, "../")
}
