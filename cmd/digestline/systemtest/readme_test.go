package systemtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestReadmeQuickstart runs the README's "Ship your own directory" block as
// written, in a directory of its own (only its build line is pointed at this
// repository), with a fresh user configuration: a newcomer's first steps.
func TestReadmeQuickstart(t *testing.T) {
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, found := strings.Cut(string(readme), "<!-- tested: TestReadmeQuickstart runs this block -->\n```sh\n")
	block, _, closed := strings.Cut(rest, "```")
	if !found || !closed {
		t.Fatal("the README has no block marked for TestReadmeQuickstart")
	}
	repo, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	const build = "go build -o bin/ ./cmd/digestline"
	if !strings.Contains(block, build) {
		t.Fatalf("the block does not build the CLI with %q:\n%s", build, block)
	}
	work := t.TempDir()
	block = strings.Replace(block, build, "(cd "+repo+" && go build -o "+work+"/bin/ ./cmd/digestline)", 1)
	script := "set -euo pipefail\n" + block
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = work
	// The block leaves digestline dev running in the background: its
	// process group goes when the test does, whatever the block did.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	t.Cleanup(func() {
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		}
	})
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+t.TempDir(), "DIGESTLINE_CONTEXT=", "DIGESTLINE_NATS_URL=", "DIGESTLINE_API_URL=", "DIGESTLINE_API_TOKEN=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(work, "dev.log"))
		t.Fatalf("the README's block failed: %v\n%s\ndev.log:\n%s", err, out, log)
	}
	for _, want := range []string{"promoted dev 127.0.0.1:5000/mine@sha256:", "promoted staging 127.0.0.1:5000/mine@sha256:", "STEP", "STARTED", "page     http://127.0.0.1:8080/runs/"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the README's block did not print %q:\n%s", want, out)
		}
	}
}
