//go:build unix

package oci

import (
	"io/fs"
	"syscall"
)

// singleLink reports whether fi is a file with no other name (hard link).
func singleLink(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Nlink == 1
}
