//go:build !unix

package oci

import (
	"io/fs"
	"os"
)

const osCreateExcl = os.O_WRONLY | os.O_CREATE | os.O_EXCL

// singleLink reports whether fi is a file with no other name: not known
// here, so no file is written over in place.
func singleLink(fs.FileInfo) bool { return false }
