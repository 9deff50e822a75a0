package systemtest

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/registry/registrytest"
)

// TestPushToARegistryThatNeverAnswersSaysSoAndGivesUp: digestline push to
// a registry that accepts the connection and never answers says within
// seconds, on standard error, what it waits on (registry, stage, how long
// so far), and ends by itself once DIGESTLINE_REGISTRY_WAIT is spent: exit
// status 2, a transport failure naming the registry and what to change.
func TestPushToARegistryThatNeverAnswersSaysSoAndGivesUp(t *testing.T) {
	addr := registrytest.Silent(t)
	layout := filepath.Join(t.TempDir(), "layout")
	cli(t, "build", e2etest.SourceDir(t, "hang"), "-o", layout)

	cmd := exec.Command(filepath.Join(binaries, "digestline"), "push", layout, addr+"/team/app:1")
	cmd.Env = append(cmd.Environ(), "DIGESTLINE_REGISTRY_TIMEOUT=4s", "DIGESTLINE_REGISTRY_WAIT=6s")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("push = %v after %s, want exit status 2\n%s", err, took, stderr.String())
	}
	if took > 30*time.Second {
		t.Errorf("push gave up after %s, want about the 6s DIGESTLINE_REGISTRY_WAIT allows", took)
	}
	for _, want := range []string{"waiting on " + addr + " in the manifest check stage", "so far", "transport error", addr, "DIGESTLINE_REGISTRY_WAIT"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("standard error does not say %q:\n%s", want, stderr.String())
		}
	}
}
