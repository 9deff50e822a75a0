package builder

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/tooltest"
	"github.com/go-git/go-git/v5/plumbing/object"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// gitRepo is a work tree made with the real git (and git-lfs) in a test,
// whose origin is the bare repository root/name.git.
type gitRepo struct {
	t   testing.TB
	git string
	dir string
	env []string
}

func newGitRepo(t testing.TB, git, root, name string) *gitRepo {
	t.Helper()
	r := &gitRepo{t: t, git: git, dir: filepath.Join(t.TempDir(), name), env: append(os.Environ(), "HOME="+t.TempDir(), "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com",
		// the test's submodules are local repositories
		"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=protocol.file.allow", "GIT_CONFIG_VALUE_0=always")}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bare := filepath.Join(root, name+".git")
	r.run("init", "--quiet", "--bare", "--initial-branch=main", bare)
	r.run("init", "--quiet", "--initial-branch=main")
	r.run("remote", "add", "origin", bare)
	return r
}

func (r *gitRepo) run(args ...string) string {
	r.t.Helper()
	cmd := exec.Command(r.git, args...)
	cmd.Dir, cmd.Env = r.dir, r.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func (r *gitRepo) write(name string, content []byte) {
	r.t.Helper()
	p := filepath.Join(r.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, content, 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// commit commits everything, pushes it to origin and returns its id.
func (r *gitRepo) commit(msg string) string {
	r.t.Helper()
	r.run("add", "-A")
	r.run("commit", "--quiet", "-m", msg)
	r.run("push", "--quiet", "origin", "main")
	return r.run("rev-parse", "HEAD")
}

// lfsServer is a Git LFS server's download side, as its batch API
// documents it, serving the objects git lfs pushed into bare repositories
// under root (their lfs/objects). It records what it was asked.
type lfsServer struct {
	root     string
	tamper   atomic.Bool
	batches  atomic.Int32
	lastAuth atomic.Value // the Authorization of the last request
}

func (s *lfsServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.lastAuth.Store(r.Header.Get("Authorization"))
	repo, rest, _ := strings.Cut(r.URL.Path, "/info/lfs/")
	objects := filepath.Join(s.root, filepath.FromSlash(repo), "lfs", "objects")
	switch {
	case r.Method == http.MethodPost && rest == "objects/batch":
		s.batches.Add(1)
		if r.Header.Get("Accept") != "application/vnd.git-lfs+json" {
			http.Error(w, "Accept must be application/vnd.git-lfs+json", http.StatusNotAcceptable)
			return
		}
		var req struct {
			Operation string      `json:"operation"`
			Transfers []string    `json:"transfers"`
			Objects   []lfsObject `json:"objects"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Operation != "download" {
			http.Error(w, "bad batch request", http.StatusUnprocessableEntity)
			return
		}
		var out []map[string]any
		for _, o := range req.Objects {
			if _, err := os.Stat(filepath.Join(objects, o.OID[:2], o.OID[2:4], o.OID)); err != nil {
				out = append(out, map[string]any{"oid": o.OID, "size": o.Size, "error": map[string]any{"code": 404, "message": "Object does not exist"}})
				continue
			}
			out = append(out, map[string]any{"oid": o.OID, "size": o.Size, "authenticated": true, "actions": map[string]any{
				"download": map[string]any{"href": "http://" + r.Host + repo + "/info/lfs/objects/" + o.OID, "header": map[string]string{"X-Download": "yes"}, "expires_in": 3600}}})
		}
		w.Header().Set("Content-Type", "application/vnd.git-lfs+json")
		_ = json.NewEncoder(w).Encode(map[string]any{"transfer": "basic", "objects": out, "hash_algo": "sha256"})
	case r.Method == http.MethodGet && strings.HasPrefix(rest, "objects/") && r.Header.Get("X-Download") == "yes":
		oid := strings.TrimPrefix(rest, "objects/")
		b, err := os.ReadFile(filepath.Join(objects, oid[:2], oid[2:4], oid))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		if s.tamper.Load() {
			b[0] ^= 0xff
		}
		_, _ = w.Write(b)
	default:
		http.Error(w, "not an LFS request this server takes", http.StatusBadRequest)
	}
}

// TestGitCheckoutHasSubmodulesAndLFSFiles builds from repositories as
// teams keep them: a submodule (relative to the repository, with one of its
// own) and files in Git LFS, both made by the real git and git-lfs, served
// by git http-backend and an LFS server, with no git on the builder. The
// tree holds the submodules' files and the LFS files' bytes, not pointers;
// what is wrong fails with its class.
func TestGitCheckoutHasSubmodulesAndLFSFiles(t *testing.T) {
	gitBin, _ := tooltest.Find(t, "git"), tooltest.Find(t, "git-lfs")
	root := t.TempDir()

	deep := newGitRepo(t, gitBin, root, "deep")
	deep.write("deep.txt", []byte("deep v1\n"))
	deep.commit("deep v1")
	// A server that fetches a commit by its id (GitHub's does), and one
	// that does not (git's default): the lib's commit is fetched with all
	// of its repository.
	deep.run("--git-dir", filepath.Join(root, "deep.git"), "config", "uploadpack.allowReachableSHA1InWant", "true")

	lib := newGitRepo(t, gitBin, root, "lib")
	lib.write("lib.txt", []byte("lib v1\n"))
	lib.run("submodule", "--quiet", "add", "../deep.git", "deep")
	libCommit := lib.commit("lib v1")
	lib.write("lib.txt", []byte("lib v2, not the app's\n"))
	lib.commit("lib v2")

	model := make([]byte, 300_000)
	if _, err := rand.Read(model); err != nil {
		t.Fatal(err)
	}
	app := newGitRepo(t, gitBin, root, "app")
	app.run("lfs", "install", "--local")
	app.run("lfs", "track", "*.bin")
	app.write("model.bin", model)
	app.write("README", []byte("app\n"))
	app.run("submodule", "--quiet", "add", "../lib.git", "vendor/lib")
	app.run("-C", "vendor/lib", "checkout", "--quiet", libCommit)
	head := app.commit("app v1")
	if pointer := app.run("show", "HEAD:model.bin"); !strings.HasPrefix(pointer, "version https://git-lfs.github.com/spec/v1") {
		t.Fatalf("git lfs committed no pointer for model.bin: %q", pointer)
	}

	lfs := &lfsServer{root: root}
	backend := &cgi.Handler{Path: gitBin, Args: []string{"http-backend"}, Stderr: io.Discard,
		Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
	mux := http.NewServeMux()
	mux.Handle("/", backend)
	mux.Handle("/app.git/info/lfs/", lfs)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	path := os.Getenv("PATH")
	t.Setenv("PATH", "") // the builder runs with no git at all

	checkout := func(url string) (string, error) {
		t.Helper()
		dir := t.TempDir()
		commit, err := gitCheckout(context.Background(), events.Source{Kind: events.SourceGit, URL: url, Rev: head, Ref: "refs/heads/main"}, dir)
		if err != nil {
			return dir, err
		}
		if commit != head {
			t.Errorf("%s: built %s, want %s", url, commit, head)
		}
		for name, want := range map[string][]byte{
			"model.bin":                []byte(nil), // checked below: large
			"README":                   []byte("app\n"),
			"vendor/lib/lib.txt":       []byte("lib v1\n"),
			"vendor/lib/deep/deep.txt": []byte("deep v1\n"),
		} {
			got, err := os.ReadFile(filepath.Join(dir, name))
			switch {
			case err != nil:
				t.Errorf("%s: %s: %v", url, name, err)
			case name == "model.bin" && !bytes.Equal(got, model):
				t.Errorf("%s: model.bin holds %d bytes (%.60q), want the LFS file's %d", url, len(got), got, len(model))
			case want != nil && !bytes.Equal(got, want):
				t.Errorf("%s: %s holds %q, want %q", url, name, got, want)
			}
		}
		return dir, nil
	}
	if _, err := checkout(srv.URL + "/app.git"); err != nil {
		t.Fatalf("over HTTP: %v", err)
	}
	if lfs.batches.Load() != 1 {
		t.Errorf("the LFS server was asked %d batches, want one for the whole tree", lfs.batches.Load())
	}
	// In the run's trace, under the build's span: each fetch, each
	// submodule, the LFS batch.
	spans := tracetest.NewSpanRecorder()
	ctx, build := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)).Tracer("test").Start(context.Background(), "build")
	if _, err := gitCheckout(ctx, events.Source{Kind: events.SourceGit, URL: srv.URL + "/app.git", Rev: head, Ref: "refs/heads/main"}, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	build.End()
	var names []string
	for _, sp := range spans.Ended() {
		if sp.Name() != "build" && sp.SpanContext().TraceID() == build.SpanContext().TraceID() {
			names = append(names, sp.Name())
		}
	}
	slices.Sort(names)
	// The app's tip; lib's commit asked by its id (this server refuses),
	// then all of lib; deep's commit by its id.
	if want := []string{"git fetch", "git fetch", "git fetch", "git fetch", "git lfs batch", "git submodule vendor/lib", "git submodule vendor/lib/deep"}; !slices.Equal(names, want) {
		t.Errorf("the checkout's spans: %q, want %q", names, want)
	}
	// A local repository (fetched with the machine's git): the LFS files
	// come from its lfs/objects, its submodules from beside it.
	t.Setenv("PATH", path)
	if _, err := checkout("file://" + filepath.Join(root, "app.git")); err != nil {
		t.Fatalf("from a local repository: %v", err)
	}

	// An LFS server that sends other bytes than the pointer names fails
	// the build as integrity.
	t.Setenv("PATH", "")
	lfs.tamper.Store(true)
	_, err := checkout(srv.URL + "/app.git")
	assertClass(t, "tampered LFS file", err, failure.Integrity, "git lfs push")
	lfs.tamper.Store(false)

	// The builder's token goes to the repository's host, and to no other
	// host an .lfsconfig names.
	const token = "tok-0123456789abcdef"
	t.Setenv("DIGESTLINE_GIT_USERNAME", "ci")
	t.Setenv("DIGESTLINE_GIT_PASSWORD", token)
	elsewhere := &lfsServer{root: root}
	other := httptest.NewServer(elsewhere)
	t.Cleanup(other.Close)
	otherURL := strings.Replace(other.URL, "127.0.0.1", "localhost", 1)
	app.write(".lfsconfig", []byte("[lfs]\n\turl = "+otherURL+"/app.git/info/lfs\n"))
	head = app.commit("LFS elsewhere")
	_, _ = checkout(srv.URL + "/app.git")
	if elsewhere.batches.Load() != 1 {
		t.Errorf("the .lfsconfig's LFS server was asked %d batches, want 1", elsewhere.batches.Load())
	}
	if auth, _ := elsewhere.lastAuth.Load().(string); auth != "" {
		t.Errorf("another host's LFS server got the builder's credentials: %q", auth)
	}
	app.run("rm", "--quiet", ".lfsconfig")

	// A submodule named by its ssh URL on the repository's own host is
	// fetched over HTTP from there, as CI checkouts rewrite it: the builder
	// has no ssh key.
	host := strings.TrimPrefix(srv.URL, "http://")
	app.run("config", "-f", ".gitmodules", "submodule.vendor/lib.url", "git@"+strings.Split(host, ":")[0]+":lib.git")
	head = app.commit("lib over ssh")
	if _, err := checkout(srv.URL + "/app.git"); err != nil {
		t.Errorf("a submodule's ssh URL on the repository's host: %v", err)
	}

	// Submodules: a local path in a repository fetched over HTTP, a commit
	// its repository does not have, a gitlink .gitmodules does not name.
	for _, c := range []struct {
		name    string
		prepare func()
		class   failure.Class
		hint    string
	}{
		{"a local submodule", func() {
			app.run("config", "-f", ".gitmodules", "submodule.vendor/lib.url", "file://"+filepath.Join(root, "lib.git"))
		}, failure.Input, "file only within a local repository"},
		{"a submodule commit nobody pushed", func() {
			app.run("config", "-f", ".gitmodules", "submodule.vendor/lib.url", "../lib.git")
			app.run("-C", "vendor/lib", "commit", "--quiet", "--allow-empty", "-m", "not pushed")
		}, failure.NotFound, "push the submodule's commit"},
		{"a gitlink with no .gitmodules entry", func() {
			app.run("-C", "vendor/lib", "checkout", "--quiet", libCommit)
			app.run("rm", "--quiet", ".gitmodules")
		}, failure.Input, "git rm --cached"},
	} {
		c.prepare()
		head = app.commit(c.name)
		_, err := checkout(srv.URL + "/app.git")
		assertClass(t, c.name, err, c.class, c.hint)
	}

	// A repository whose LFS files were never pushed to its server.
	if err := os.RemoveAll(filepath.Join(root, "app.git", "lfs")); err != nil {
		t.Fatal(err)
	}
	_, err = checkout(srv.URL + "/app.git")
	assertClass(t, "LFS file not on the server", err, failure.NotFound, "git lfs push --all origin")
}

func assertClass(t *testing.T, what string, err error, class failure.Class, hint string) {
	t.Helper()
	var fe *failure.Error
	if !errors.As(err, &fe) || fe.Class != class || !strings.Contains(fe.Hint, hint) {
		t.Errorf("%s: %v, want a %s failure whose hint says %q", what, err, class, hint)
	}
}

// TestAPushedCommitIsFetchedWithoutItsHistory builds pushes to a
// repository whose old history is large: the builder fetches the pushed
// commit alone when it is the ref's tip, the ref's recent commits when the
// ref has moved a little past it since the push, and the whole history
// only for a commit further back.
func TestAPushedCommitIsFetchedWithoutItsHistory(t *testing.T) {
	gitBin := tooltest.Find(t, "git")
	root := t.TempDir()
	repo := newGitRepo(t, gitBin, root, "app")
	var commits []string
	for i := range 30 + refDepth + 10 {
		if i < 30 { // the old history: a large file rewritten 30 times
			blob := make([]byte, 64<<10) // incompressible: each version costs its size in the pack
			if _, err := rand.Read(blob); err != nil {
				t.Fatal(err)
			}
			repo.write("data.bin", blob)
		}
		repo.write("version", []byte(fmt.Sprint(i)))
		repo.run("add", "-A")
		repo.run("commit", "--quiet", "-m", fmt.Sprint("v", i))
		commits = append(commits, repo.run("rev-parse", "HEAD"))
	}
	repo.run("push", "--quiet", "origin", "main")
	backend := &cgi.Handler{Path: gitBin, Args: []string{"http-backend"}, Stderr: io.Discard,
		Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		backend.ServeHTTP(countingWriter{w, &served}, r)
	}))
	t.Cleanup(srv.Close)

	tip := len(commits) - 1
	for _, c := range []struct {
		name     string
		at       int
		maxBytes int64
	}{
		{"the ref's tip", tip, 200 << 10},
		{"a commit the ref moved a little past", tip - 5, 400 << 10},
		{"a commit far behind the ref", 20, 4 << 20},
	} {
		served.Store(0)
		dir := t.TempDir()
		got, err := gitCheckout(context.Background(), events.Source{Kind: events.SourceGit, URL: srv.URL + "/app.git", Rev: commits[c.at], Ref: "refs/heads/main"}, dir)
		if err != nil || got != commits[c.at] {
			t.Fatalf("%s: %s %v", c.name, got, err)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "version")); string(b) != fmt.Sprint(c.at) {
			t.Errorf("%s: version holds %q, want %d", c.name, b, c.at)
		}
		if n := served.Load(); n > c.maxBytes {
			t.Errorf("%s: fetched %d bytes, want at most %d (the history is about %d)", c.name, n, c.maxBytes, 30*64<<10)
		}
	}
}

// countingWriter counts the bytes of a response.
type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w countingWriter) Write(b []byte) (int, error) {
	w.n.Add(int64(len(b)))
	return w.ResponseWriter.Write(b)
}

// TestSubmoduleAndLFSURLs: the URLs a submodule's and an LFS server's
// addresses resolve to, as git and git-lfs resolve them.
func TestSubmoduleAndLFSURLs(t *testing.T) {
	for _, c := range []struct{ parent, url, want string }{
		{"https://github.com/acme/app.git", "../lib.git", "https://github.com/acme/lib.git"},
		{"https://github.com/acme/app.git", "../../other/lib.git", "https://github.com/other/lib.git"},
		{"https://github.com/acme/app.git", "./sub.git", "https://github.com/acme/app.git/sub.git"},
		{"https://github.com/app.git", "../../lib.git", "https://github.com/lib.git"}, // never above the host
		{"git@github.com:acme/app.git", "../lib.git", "git@github.com:acme/lib.git"},
		{"git@github.com:app.git", "../lib.git", "git@github.com:lib.git"},
		{"/srv/git/app", "../lib", "/srv/git/lib"},
		{"https://github.com/acme/app.git", "https://gitlab.com/x/y.git", "https://gitlab.com/x/y.git"},
	} {
		if got := submoduleURL(c.parent, c.url); got != c.want {
			t.Errorf("submoduleURL(%q, %q) = %q, want %q", c.parent, c.url, got, c.want)
		}
	}
	for url, want := range map[string]string{
		"https://github.com/acme/app":        "https://github.com/acme/app.git/info/lfs",
		"https://github.com/acme/app.git":    "https://github.com/acme/app.git/info/lfs",
		"http://127.0.0.1:3000/acme/app.git": "http://127.0.0.1:3000/acme/app.git/info/lfs",
		"git@github.com:acme/app.git":        "https://github.com/acme/app.git/info/lfs",
		"ssh://git@github.com:2222/acme/app": "https://github.com/acme/app.git/info/lfs",
		"https://[::1]:8443/acme/app.git":    "https://[::1]:8443/acme/app.git/info/lfs",
	} {
		ep, err := gitEndpoint(url)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := lfsEndpoint(&object.Tree{}, ep); err != nil || got != want {
			t.Errorf("lfsEndpoint(%q) = %q %v, want %q", url, got, err, want)
		}
	}
}

// A download that fails names the object, not its link: a bucket's
// presigned URL is a credential while it lasts.
func TestAnLFSDownloadsFailureKeepsItsLinkOut(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	href := dead.URL + "/bucket/obj?X-Amz-Signature=s3cr3tsignature"
	dead.Close() // nothing answers there now
	files := &lfsFiles{client: &http.Client{}, downloads: map[string]lfsAction{strings.Repeat("a", 64): {Href: href}}}
	_, err := files.open(context.Background(), lfsObject{OID: strings.Repeat("a", 64), Size: 1})
	if err == nil || strings.Contains(err.Error(), "s3cr3tsignature") || !strings.Contains(err.Error(), "Git LFS object aaaa") {
		t.Errorf("a failed download: %v", err)
	}
}
