package service

import (
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestTLSHasRootsWhereTheSystemHasNone: in a FROM-scratch image there is
// no CA bundle; the binaries still trust the public CAs (their fallback
// roots), so HTTPS to a forge, a registry or a chat works. The test runs
// itself again with SSL_CERT_FILE and SSL_CERT_DIR naming an empty
// directory, as such an image has.
func TestTLSHasRootsWhereTheSystemHasNone(t *testing.T) {
	if os.Getenv("DIGESTLINE_ROOTS_CHILD") == "1" {
		pool, err := x509.SystemCertPool()
		//nolint:staticcheck // Subjects is deprecated for system pools, but counts what a test needs
		if err != nil || pool == nil || len(pool.Subjects()) == 0 {
			t.Fatalf("no roots without the system's: %v", err)
		}
		return
	}
	empty := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestTLSHasRootsWhereTheSystemHasNone$", "-test.count", "1")
	cmd.Env = append(os.Environ(), "DIGESTLINE_ROOTS_CHILD=1", "SSL_CERT_FILE="+filepath.Join(empty, "none.pem"), "SSL_CERT_DIR="+empty)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("with no system roots: %v\n%s", err, out)
	}
}
