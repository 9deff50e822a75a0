package e2etest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/digestline/digestline/services/builder"
)

func Git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

const WebhookSecret = "hook-secret-0123456789"

// SignGitHub is GitHub's X-Hub-Signature-256 of body.
func SignGitHub(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// SendGitHub delivers a push event as GitHub does; an empty signature sends
// none.
func SendGitHub(t *testing.T, url, signature, delivery string, body []byte) (int, builder.WebhookAccepted) {
	t.Helper()
	headers := map[string]string{"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery}
	if signature != "" {
		headers["X-Hub-Signature-256"] = signature
	}
	return SendForge(t, url, headers, body)
}

// SendForge posts a webhook's JSON body with the forge's headers and reads
// the answer.
func SendForge(t *testing.T, url string, headers map[string]string, body []byte) (int, builder.WebhookAccepted) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var acc builder.WebhookAccepted
	_ = json.NewDecoder(resp.Body).Decode(&acc)
	return resp.StatusCode, acc
}

// GitPushBody is a GitHub push event of a tag at sha in repository.
func GitPushBody(repository, tag, sha string) []byte {
	body, _ := json.Marshal(map[string]any{"ref": "refs/tags/" + tag, "after": sha,
		"repository": map[string]string{"full_name": repository, "clone_url": "https://github.example/" + repository + ".git"}})
	return body
}

// GitRepo is a git repository of one commit (app.txt holding content) and
// that commit's sha.
func GitRepo(t *testing.T, content string) (dir, sha string) {
	t.Helper()
	dir = t.TempDir()
	Git(t, dir, "init", "--quiet", "--initial-branch=main")
	if err := os.WriteFile(filepath.Join(dir, "app.txt"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	Git(t, dir, "add", ".")
	Git(t, dir, "commit", "--quiet", "-m", "v1")
	return dir, Git(t, dir, "rev-parse", "HEAD")
}
