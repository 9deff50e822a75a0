package oci

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
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
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()

	tr := tar.NewReader(r)
	var total int64
	for entries := 0; ; entries++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tarball: %w", err)
		}
		if entries >= lim.MaxEntries {
			return fmt.Errorf("%w: more than %d entries", ErrUnsafeEntry, lim.MaxEntries)
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
		refuse := func(why string) error { return fmt.Errorf("%w %q: %s", ErrUnsafeEntry, hdr.Name, why) }
		mode := os.FileMode(hdr.Mode) & os.ModePerm
		if err := root.MkdirAll(path.Dir(name), 0o755); err != nil && path.Dir(name) != "." {
			return refuse(err.Error())
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return refuse(err.Error())
			}
		case tar.TypeReg:
			if hdr.Size < 0 || hdr.Size > lim.MaxFileSize {
				return refuse(fmt.Sprintf("size %d exceeds the limit of %d bytes", hdr.Size, lim.MaxFileSize))
			}
			if total += hdr.Size; total > lim.MaxTotalSize {
				return refuse(fmt.Sprintf("total size exceeds the limit of %d bytes", lim.MaxTotalSize))
			}
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode|0o600)
			if err != nil {
				return refuse(err.Error())
			}
			_, err = io.Copy(f, io.LimitReader(tr, hdr.Size))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("extract %q: %w", hdr.Name, err)
			}
		case tar.TypeSymlink:
			target := hdr.Linkname
			if path.IsAbs(target) || escapes(path.Join(path.Dir(name), target)) {
				return refuse(fmt.Sprintf("symlink to %q points outside the root", target))
			}
			if err := root.Symlink(target, name); err != nil {
				return refuse(err.Error())
			}
		case tar.TypeLink:
			target, err := cleanEntryName(hdr.Linkname)
			if err != nil || target == "" {
				return refuse(fmt.Sprintf("hardlink to %q points outside the root", hdr.Linkname))
			}
			if err := root.Link(target, name); err != nil {
				return refuse(err.Error())
			}
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			return refuse("device and fifo entries are not allowed")
		default:
			return refuse(fmt.Sprintf("unsupported entry type %q", hdr.Typeflag))
		}
	}
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
