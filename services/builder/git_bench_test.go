package builder

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/tooltest"
)

// BenchmarkGitCheckout checks out a push to a repository of 20,000
// commits (200 files, each commit adding a line to one) over git
// http-backend:
//   - pushed-tip: the pushed commit is the ref's tip, as a webhook's
//     almost always is: fetched alone;
//   - moved-ref: the ref moved on by 5 commits since the push: its last
//     64 commits are fetched;
//   - whole-history: a commit 1,000 behind the ref: all of its history,
//     which is what every checkout fetched before.
func BenchmarkGitCheckout(b *testing.B) {
	gitBin := tooltest.Find(b, "git")
	root := b.TempDir()
	bare := filepath.Join(root, "app.git")
	if out, err := exec.Command(gitBin, "init", "--quiet", "--bare", bare).CombinedOutput(); err != nil {
		b.Fatalf("git init: %v\n%s", err, out)
	}
	// Each commit adds a line (64 hex digits: no text compresses them much)
	// to one of 200 files: the history is about ten times the tree, as in
	// a repository that grew by small changes.
	var stream strings.Builder
	const commits, files = 20_000, 200
	contents := make([]string, files)
	for i := 1; i <= commits; i++ {
		f := i % files
		contents[f] += fmt.Sprintf("%x\n", sha256.Sum256([]byte(strconv.Itoa(i))))
		fmt.Fprintf(&stream, "commit refs/heads/main\ncommitter t <t@example.com> %d +0000\ndata 4\nc%03d\nM 100644 inline file%d.txt\ndata %d\n%s\n",
			1_700_000_000+i, i%1000, f, len(contents[f]), contents[f])
	}
	imp := exec.Command(gitBin, "--git-dir", bare, "fast-import", "--quiet")
	imp.Stdin = strings.NewReader(stream.String())
	if out, err := imp.CombinedOutput(); err != nil {
		b.Fatalf("git fast-import: %v\n%s", err, out)
	}
	out, err := exec.Command(gitBin, "--git-dir", bare, "rev-list", "--max-count=1001", "main").Output()
	if err != nil {
		b.Fatal(err)
	}
	revs := strings.Fields(string(out)) // newest first
	backend := &cgi.Handler{Path: gitBin, Args: []string{"http-backend"}, Stderr: io.Discard,
		Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		backend.ServeHTTP(countingWriter{w, &served}, r)
	}))
	b.Cleanup(srv.Close)

	for _, c := range []struct{ name, rev string }{{"pushed-tip", revs[0]}, {"moved-ref", revs[5]}, {"whole-history", revs[1000]}} {
		b.Run(c.name, func(b *testing.B) {
			served.Store(0)
			for b.Loop() {
				dir, err := os.MkdirTemp(b.TempDir(), "checkout-*")
				if err != nil {
					b.Fatal(err)
				}
				if _, err := gitCheckout(context.Background(), events.Source{Kind: events.SourceGit, URL: srv.URL + "/app.git", Rev: c.rev, Ref: "refs/heads/main"}, dir); err != nil {
					b.Fatal(err)
				}
				_ = os.RemoveAll(dir)
			}
			b.ReportMetric(float64(served.Load())/float64(b.N)/1e6, "MB-fetched/op")
		})
	}
}
