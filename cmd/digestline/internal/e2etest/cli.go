package e2etest

import (
	"strings"
	"testing"
)

// CLI runs a digestline command and returns what it printed and how it
// ended: in the test's process (the CLI's tests) or as the built binary
// (the system tests).
type CLI func(t *testing.T, args ...string) (string, error)

// Must runs args and returns what the command printed, failing the test
// when it fails.
func (c CLI) Must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c(t, args...)
	if err != nil {
		t.Fatalf("digestline %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// Promote runs `digestline promote ref --to env` against s's API.
func (c CLI) Promote(t *testing.T, s *Stack, ref, env string, flags ...string) (string, error) {
	t.Helper()
	return c(t, append([]string{"promote", ref, "--to", env, "--api", s.APIURL, "--timeout", "1m"}, flags...)...)
}
