package service

import (
	"crypto/sha256"
	"crypto/subtle"
)

// SameSecret reports whether given is the configured secret want, in
// constant time over equal-length hashes so that neither timing nor length
// gives the secret away. An unset secret (want == "") matches nothing.
func SameSecret(given, want string) bool {
	if want == "" {
		return false
	}
	g, w := sha256.Sum256([]byte(given)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}
