package builder

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/tooltest"
)

// TestGitCheckoutOverHTTPWithoutGit clones from a real smart-HTTP git
// server (git http-backend) with no git on the builder's PATH, as in the
// builder's FROM-scratch image: the tree at an annotated tag comes out with
// its executable bits and symlinks, and nothing of .git or of later commits.
func TestGitCheckoutOverHTTPWithoutGit(t *testing.T) {
	gitBin := tooltest.Find(t, "git")
	root := t.TempDir()
	repo := filepath.Join(root, "app.git")
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(gitBin, args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	write := func(name, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(repo, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(repo, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("version.txt", "v1")
	write("bin/run", "#!/bin/sh\necho v1\n")
	if err := os.Chmod(filepath.Join(repo, "bin/run"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("bin/run", filepath.Join(repo, "start")); err != nil {
		t.Fatal(err)
	}
	run("init", "--quiet", "--initial-branch=main")
	run("add", ".")
	run("commit", "--quiet", "-m", "v1")
	v1 := run("rev-parse", "HEAD")
	run("tag", "-a", "v1.0.0", "-m", "release v1")
	tagObject := run("rev-parse", "v1.0.0") // the annotated tag's own id, as some forges send it
	write("version.txt", "v2")
	run("commit", "--quiet", "-am", "v2")

	backend := &cgi.Handler{Path: gitBin, Args: []string{"http-backend"}, Stderr: io.Discard,
		Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
	srv := httptest.NewServer(backend)
	t.Cleanup(srv.Close)
	t.Setenv("PATH", "") // the builder runs with no git at all

	dir := t.TempDir()
	commit, err := gitCheckout(context.Background(), events.Source{Kind: events.SourceGit, URL: srv.URL + "/app.git", Rev: "v1.0.0"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if commit != v1 {
		t.Errorf("v1.0.0 resolved to %s, want the tagged commit %s", commit, v1)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "version.txt")); string(b) != "v1" {
		t.Errorf("version.txt holds %q, want the tagged tree's v1", b)
	}
	if st, err := os.Stat(filepath.Join(dir, "bin/run")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("bin/run: %v %v, want an executable", st, err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "start")); err != nil || target != "bin/run" {
		t.Errorf("start: %q %v, want a symlink to bin/run", target, err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".git")); !errors.Is(err, os.ErrNotExist) {
		t.Error("the checkout holds .git")
	}

	// An IPv6 literal holds "::" too, and is an address like any other.
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatalf("IPv6 loopback: %v", err)
	}
	v6 := &httptest.Server{Listener: ln, Config: &http.Server{Handler: backend}}
	v6.Start()
	t.Cleanup(v6.Close)
	if got, err := gitCheckout(context.Background(), events.Source{Kind: events.SourceGit, URL: v6.URL + "/app.git", Rev: "v1.0.0"}, t.TempDir()); err != nil || got != v1 {
		t.Errorf("%s: %s %v", v6.URL, got, err)
	}

	// A short commit id resolves too; what cannot be fetched or found fails
	// with the class a user acts on.
	if got, err := gitCheckout(context.Background(), events.Source{Kind: events.SourceGit, URL: srv.URL + "/app.git", Rev: v1[:10]}, t.TempDir()); err != nil || got != v1 {
		t.Errorf("short id: %s %v", got, err)
	}
	if got, err := gitCheckout(context.Background(), events.Source{Kind: events.SourceGit, URL: srv.URL + "/app.git", Rev: tagObject, Ref: "refs/tags/v1.0.0"}, t.TempDir()); err != nil || got != v1 {
		t.Errorf("an annotated tag's id on its ref: %s %v, want its commit %s", got, err, v1)
	}
	if got, err := gitCheckout(context.Background(), events.Source{Kind: events.SourceGit, URL: srv.URL + "/app.git", Rev: v1, Ref: "refs/tags/v1.0.0"}, t.TempDir()); err != nil || got != v1 {
		t.Errorf("an annotated tag's commit on its ref (GitHub's head_commit): %s %v, want %s", got, err, v1)
	}
	v2 := run("rev-parse", "HEAD")
	for _, tc := range []struct {
		url, rev, ref string
		class         failure.Class
	}{
		{srv.URL + "/app.git", "no-such-tag", "", failure.NotFound},
		{srv.URL + "/app.git", v2, "refs/tags/v1.0.0", failure.NotFound}, // not on the pushed ref
		{srv.URL + "/app.git", v1, "refs/heads/gone", failure.NotFound},  // a ref deleted since the push
		{srv.URL + "/app.git", v1, "refs/heads/../x", failure.Input},
		{srv.URL + "/app.git", v1, "main", failure.Input},
		{srv.URL + "/missing.git", "main", "", failure.NotFound},
		{"ext::sh -c touch% /tmp/pwned", "main", "", failure.Input},
		{"fd::17", "main", "", failure.Input},
		{"git+ext::sh -c x", "main", "", failure.Input},
		{srv.URL + "/app.git", "--upload-pack=x", "", failure.Input},
	} {
		_, err := gitCheckout(context.Background(), events.Source{Kind: events.SourceGit, URL: tc.url, Rev: tc.rev, Ref: tc.ref}, t.TempDir())
		var be *failure.Error
		if !errors.As(err, &be) || be.Class != tc.class || be.Hint == "" {
			t.Errorf("%s at %s: %v, want a %s error with a hint", tc.url, tc.rev, err, tc.class)
		}
	}

	// A private repository: the token comes from the environment, and a
	// token written into the URL never shows in an error.
	const token = "tok-0123456789abcdef"
	private := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user, pass, ok := r.BasicAuth(); !ok || user != "ci" || pass != token {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(private.Close)
	_, err = gitCheckout(context.Background(), events.Source{Kind: events.SourceGit, URL: private.URL + "/app.git", Rev: "main"}, t.TempDir())
	var be *failure.Error
	if !errors.As(err, &be) || be.Class != failure.Auth || !strings.Contains(be.Hint, "DIGESTLINE_GIT_PASSWORD") {
		t.Errorf("private repository without credentials: %v", err)
	}
	withToken := strings.Replace(private.URL, "http://", "http://ci:"+token+"@", 1) + "/app.git"
	if _, err := gitCheckout(context.Background(), events.Source{Kind: events.SourceGit, URL: withToken, Rev: "no-such-tag"}, t.TempDir()); err == nil || strings.Contains(err.Error(), token) {
		t.Errorf("error with a token in the URL: %v", err)
	}
	t.Setenv("DIGESTLINE_GIT_USERNAME", "ci")
	t.Setenv("DIGESTLINE_GIT_PASSWORD", token)
	if got, err := gitCheckout(context.Background(), events.Source{Kind: events.SourceGit, URL: private.URL + "/app.git", Rev: "v1.0.0"}, t.TempDir()); err != nil || got != v1 {
		t.Errorf("private repository with DIGESTLINE_GIT_PASSWORD: %s %v", got, err)
	}
}

func TestRedactGitURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://github.com/acme/app.git":                   "https://github.com/acme/app.git",
		"https://x-access-token:ghs_abc@github.com/a/b.git": "https://github.com/a/b.git",
		"https://ghp_abc@github.com/a/b.git":                "https://github.com/a/b.git",
		"git@github.com:acme/app.git":                       "git@github.com:acme/app.git",
		"ssh://git:secret@host/app.git":                     "ssh://host/app.git",
		"file:///srv/app":                                   "file:///srv/app",
	} {
		if got := redactGitURL(in); got != want {
			t.Errorf("redactGitURL(%q) = %q, want %q", in, got, want)
		}
	}
}
