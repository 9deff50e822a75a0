//go:build !unix

package oci

import "io/fs"

// singleLink reports whether fi is a file with no other name: not known
// here, so no file is written over in place.
func singleLink(fs.FileInfo) bool { return false }
