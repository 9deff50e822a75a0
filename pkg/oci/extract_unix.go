//go:build unix

package oci

import (
	"io/fs"
	"os"
	"syscall"
)

const osCreateExcl = os.O_WRONLY | os.O_CREATE | os.O_EXCL

// singleLink reports whether fi is a file with no other name (hard link).
func singleLink(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Nlink == 1
}
