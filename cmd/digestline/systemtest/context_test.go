package systemtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
)

// devContext is the context file digestline dev writes.
type devContext struct {
	NATSURL, APIURL, TokenFile, Registry, WebhookURL string
}

// TestCommandsFindTheStackDevStarted: after `digestline dev --data X` on
// ports nobody would guess, ship, records, promote, run show and run
// follow work with no flags and no variables, from another directory; a
// wrong token is told apart from a missing one.
func TestCommandsFindTheStackDevStarted(t *testing.T) {
	for _, v := range []string{"DIGESTLINE_NATS_URL", "DIGESTLINE_API_URL", "DIGESTLINE_API_TOKEN", "DIGESTLINE_API_TOKEN_FILE", "DIGESTLINE_DATA", "DIGESTLINE_CONTEXT"} {
		t.Setenv(v, "")
	}
	config := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", config)
	t.Setenv("DIGESTLINE_WEBHOOK_SECRET", e2etest.WebhookSecret)
	data := filepath.Join(t.TempDir(), "stack")
	repoDir, sha := e2etest.GitRepo(t, "from a webhook")
	e2etest.Git(t, repoDir, "tag", "v1.0.0")
	regAddr := fmt.Sprintf("127.0.0.1:%d", e2etest.FreePort(t)) // the webhook rule names the image by it
	rules := filepath.Join(t.TempDir(), "webhooks.yaml")
	if err := os.WriteFile(rules, []byte("repositories:\n- match: acme/app\n  git: file://"+repoDir+"\n  image: "+regAddr+"/acme/hooked\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	dev := exec.Command(filepath.Join(binaries, "digestline"), "dev", "--data", data, "--nats-port", "-1",
		"--registry-addr", regAddr, "--api-addr", "127.0.0.1:0", "--webhook-addr", "127.0.0.1:0", "--webhook-config", rules)
	var banner strings.Builder
	dev.Stdout, dev.Stderr = &banner, nil
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dev.Process.Signal(syscall.SIGTERM); _ = dev.Wait() })
	var stack devContext
	e2etest.WaitFor(t, "dev's context file", func() bool {
		b, err := os.ReadFile(filepath.Join(config, "digestline", "context.json"))
		return err == nil && json.Unmarshal(b, &stack) == nil && stack.APIURL != ""
	})
	if strings.HasSuffix(stack.NATSURL, ":4222") || strings.HasSuffix(stack.APIURL, ":8080") || !strings.HasPrefix(stack.TokenFile, data) {
		t.Fatalf("context %+v", stack)
	}

	// Every command from here runs elsewhere, with no flag saying where the stack is.
	t.Chdir(t.TempDir())
	out := cli(t, "ship", e2etest.SourceDir(t, "found by context"), stack.Registry+"/ctx/app:1")
	runID := regexp.MustCompile(`run ([0-9a-f-]{36}): building`).FindStringSubmatch(out)
	digest := regexp.MustCompile(`@(sha256:[0-9a-f]{64})`).FindStringSubmatch(out)
	if runID == nil || digest == nil || !strings.Contains(out, "page "+stack.APIURL+"/runs/"+runID[1]) {
		t.Fatalf("ship printed:\n%s", out)
	}
	if out := cli(t, "records"); !strings.Contains(out, stack.Registry+"/ctx/app") {
		t.Fatalf("records printed:\n%s", out)
	}
	hostPort := strings.TrimPrefix(stack.APIURL, "http://") // the form --api-addr takes
	if out := cli(t, "records", "--api", hostPort, "--env", "dev"); !strings.Contains(out, digest[1]) {
		t.Fatalf("records --api %s printed:\n%s", hostPort, out)
	}
	ref := stack.Registry + "/ctx/app@" + digest[1]
	if out := cli(t, "promote", ref, "--to", "staging"); !strings.Contains(out, "promoted staging") {
		t.Fatalf("promote printed:\n%s", out)
	}
	show := cli(t, "run", "show", runID[1][:8])
	for _, want := range []string{"run " + runID[1] + "  PROMOTED", "page     " + stack.APIURL + "/runs/" + runID[1], "trace    ", "manifest publish", "[VERIFY] digest match"} {
		if !strings.Contains(show, want) {
			t.Fatalf("run show lacks %q:\n%s", want, show)
		}
	}

	// A wrong token is not a missing one.
	t.Setenv("DIGESTLINE_API_TOKEN", "not-the-token")
	if _, err := cliErr(t, "promote", ref, "--to", "prod"); err == nil || !strings.Contains(err.Error(), "refused the API token from DIGESTLINE_API_TOKEN") {
		t.Fatalf("promote with a wrong token: %v", err)
	}
	t.Setenv("DIGESTLINE_API_TOKEN", "")
	t.Setenv("DIGESTLINE_API_TOKEN_FILE", filepath.Join(t.TempDir(), "none"))
	if _, err := cliErr(t, "promote", ref, "--to", "prod"); err == nil || !strings.Contains(err.Error(), "no API token") {
		t.Fatalf("promote with no token: %v", err)
	}
	t.Setenv("DIGESTLINE_API_TOKEN_FILE", "")

	// A webhook's run, followed by its id: promoted, exit 0.
	body := e2etest.GitPushBody("acme/app", "v1.0.0", sha)
	code, acc := e2etest.SendGitHub(t, stack.WebhookURL+"/webhooks/github", e2etest.SignGitHub(e2etest.WebhookSecret, body), "ctx-1", body)
	if code != http.StatusAccepted || acc.RunURL != stack.APIURL+"/runs/"+acc.RunID {
		t.Fatalf("webhook: %d %+v", code, acc)
	}
	if out := cli(t, "run", "follow", acc.RunID); !strings.Contains(out, "[VERIFY] digest match") || !strings.Contains(out, "promoted dev") {
		t.Fatalf("run follow printed:\n%s", out)
	}
	// A rejected run: follow exits 2 with the gate and its hint.
	rejected := cli(t, "promote", "--no-wait", stack.Registry+"/ctx/app@sha256:"+strings.Repeat("0", 64), "--to", "staging")
	id := regexp.MustCompile(`run ([0-9a-f-]{36})`).FindStringSubmatch(rejected)
	if id == nil {
		t.Fatalf("promote --no-wait printed:\n%s", rejected)
	}
	start := time.Now()
	_, err := cliErr(t, "run", "follow", id[1])
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(err.Error(), "rejected by gate") {
		t.Fatalf("run follow of a rejected run: %v (after %s)", err, time.Since(start))
	}
}
