package main

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/dev"
	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/digestline/digestline/pkg/tooltest"
	"github.com/digestline/digestline/services/builder"
	"github.com/digestline/digestline/services/notifier"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestAMonorepoPushBuildsEachImageFromItsDirectory: a repository that
// holds several services, each with its rule and its directory, served
// over git's smart HTTP. One push builds each service's image from its own
// directory (its files at the image's root, its own digestline.yaml), one
// run each; a redelivery starts none again; a rule whose directory the
// commit lacks fails its run with what to do, and the others build. The
// commit gets a status per image on the forge it was pushed to (the rules
// clone from a mirror): pending, then how each run ended, linked to the
// run's page.
func TestAMonorepoPushBuildsEachImageFromItsDirectory(t *testing.T) {
	work := t.TempDir()
	e2etest.Git(t, work, "init", "--quiet", "--initial-branch=main")
	for file, content := range map[string]string{
		"README.md":                        "the monorepo",
		"services/api/api.txt":             "api",
		"services/api/digestline.yaml":     "labels: {component: api}\n",
		"services/web/index.html":          "<p>web</p>",
		"services/web/static/app.css":      "p {}",
		"libs/shared/shared.txt":           "not in any image",
		"services/api/internal/handler.go": "package internal",
	} {
		p := filepath.Join(work, filepath.FromSlash(file))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e2etest.Git(t, work, "add", ".")
	e2etest.Git(t, work, "commit", "--quiet", "-m", "two services")
	sha := e2etest.Git(t, work, "rev-parse", "HEAD")

	served := t.TempDir()
	e2etest.Git(t, served, "clone", "--quiet", "--bare", work, "mono.git")
	gitServer := httptest.NewServer(&cgi.Handler{Path: tooltest.Find(t, "git"), Args: []string{"http-backend"}, Stderr: io.Discard,
		Env: []string{"GIT_PROJECT_ROOT=" + served, "GIT_HTTP_EXPORT_ALL=1"}})
	t.Cleanup(gitServer.Close)
	forge := &statusesSent{}
	forgeAPI := httptest.NewServer(forge)
	t.Cleanup(forgeAPI.Close)

	regAddr := fmt.Sprintf("127.0.0.1:%d", e2etest.FreePort(t))
	repo := gitServer.URL + "/mono.git"
	s, _ := e2etest.StartStack(t, e2etest.WithRegistryAddr(regAddr), func(c *dev.Config) {
		c.WebhookAddr = "127.0.0.1:0"
		c.Webhook = builder.WebhookConfig{Secret: e2etest.WebhookSecret, GitLabToken: "gitlab-token-0123456789", Repositories: []builder.WebhookRule{
			{Match: "acme/mono", Git: repo, Image: regAddr + "/acme/api", Dir: "services/api", Paths: []string{"services/api/**"}},
			{Match: "acme/mono", Git: repo, Image: regAddr + "/acme/web", Dir: "services/web", Paths: []string{"services/web", "libs/shared/**"}},
			{Match: "acme/mono", Git: repo, Image: regAddr + "/acme/worker", Dir: "services/worker"}, // not in this commit
		}}
		// The pushes are made to GitHub (github.example) and Bitbucket Data
		// Center (bitbucket.example); the rules clone from a mirror (the
		// git server), and the statuses go to the forge pushed to.
		c.Notifications = []notifier.Rule{
			{Name: "github", Format: notifier.FormatGitHubStatus, URL: forgeAPI.URL, Forge: "github.example", Kinds: []string{notifier.KindStatus}},
			{Name: "bitbucket", Format: notifier.FormatBitbucketServerStatus, URL: forgeAPI.URL, Forge: "bitbucket.example", Kinds: []string{notifier.KindStatus}},
		}
	})
	// CI follows the commit's runs as it pushes, before the forge's
	// webhook is delivered, through a reporter that stops answering for a
	// while (a restart).
	followed := cliLater(t, "run", "follow", "--commit", sha, "--timeout", "2m", "--api", restarting(t, s.APIURL))
	body, _ := json.Marshal(map[string]any{"ref": "refs/heads/main", "after": sha,
		"repository": map[string]string{"full_name": "acme/mono", "clone_url": "https://github.example/acme/mono.git"}})
	code, acc := e2etest.SendGitHub(t, s.WebhookURL+"/webhooks/github", e2etest.SignGitHub(e2etest.WebhookSecret, body), "mono-1", body)
	if code != http.StatusAccepted || len(acc.More) != 2 {
		t.Fatalf("a push to the monorepo: %d, %d more runs, want 202 and 2", code, len(acc.More))
	}
	all := append([]builder.WebhookAccepted{acc}, acc.More...)
	ends := map[string]string{} // image → how its run ended
	for _, a := range all {
		evs := s.RunEvents(t, a.RunID)
		n, _ := events.NameOfType(evs[len(evs)-1]["type"].(string))
		var run runs.Run
		if s.GetJSON(t, "/v1/runs/"+a.RunID+"/summary", &run) != http.StatusOK {
			t.Fatalf("run %s has no summary", a.RunID)
		}
		ends[run.Target] = string(n)
		if dir := strings.Split(strings.TrimPrefix(run.Target, regAddr+"/acme/"), ":")[0]; !strings.HasSuffix(run.Source, ", directory services/"+dir) {
			t.Errorf("run %s says it builds from %q, want its directory services/%s", a.RunID, run.Source, dir)
		}
		if n == events.BuildFailed {
			if run.Err == nil || run.Err.Failure.Class != "input" || !strings.Contains(run.Err.Failure.Hint, "source.dir") {
				t.Errorf("the worker's run (no such directory) failed with %+v, want input and a hint naming source.dir", run.Err)
			}
		}
	}
	want := map[string]string{regAddr + "/acme/api:main": "promoted", regAddr + "/acme/web:main": "promoted", regAddr + "/acme/worker:main": "build.failed"}
	for target, end := range want {
		if ends[target] != end {
			t.Errorf("%s ended %q, want %q (all: %v)", target, ends[target], end, ends)
		}
	}
	// The follow waited out the restart, printed how each run ended, and
	// exits 2 for the worker's.
	f := <-followed
	var exit *exitCodeError
	if !errors.As(f.err, &exit) || exit.code != 2 || !strings.Contains(f.err.Error(), "1 of the 3 runs of commit "+sha[:12]+" failed") ||
		strings.Count(f.out, "[WAIT] reporter API: 503 Service Unavailable") != 1 ||
		!strings.Contains(f.out, regAddr+"/acme/api:main: promoted dev "+regAddr+"/acme/api@") || !strings.Contains(f.out, ", built from commit "+sha[:12]) ||
		!strings.Contains(f.out, regAddr+"/acme/web:main: promoted dev") ||
		!strings.Contains(f.out, regAddr+"/acme/worker:main: failed: build.failed: input error at build") {
		t.Errorf("run follow --commit %s: %v\n%s\nwant each run's end, and exit 2 naming the worker's", sha, f.err, f.out)
	}
	// One run followed through such a restart: waited out, said once.
	for _, a := range all {
		var run runs.Run
		if s.GetJSON(t, "/v1/runs/"+a.RunID+"/summary", &run); !strings.HasSuffix(run.Target, "/acme/api:main") {
			continue
		}
		out, err := cliErr(t, "run", "follow", a.RunID, "--timeout", "1m", "--api", restarting(t, s.APIURL))
		if err != nil || strings.Count(out, "[WAIT] reporter API: 503 Service Unavailable") != 1 || !strings.Contains(out, "promoted dev ") {
			t.Errorf("run follow %s through a restarting reporter: %v\n%s", a.RunID, err, out)
		}
	}

	// The commit's statuses: one context per image, pending, then how its
	// run ended, linked to its page.
	statuses := []string{}
	for _, a := range all {
		var run runs.Run
		s.GetJSON(t, "/v1/runs/"+a.RunID+"/summary", &run)
		image := strings.Split(strings.TrimPrefix(run.Target, regAddr+"/"), ":")[0]
		end := "success"
		if strings.HasSuffix(image, "worker") {
			end = "failure"
		}
		for _, state := range []string{"pending", end} {
			statuses = append(statuses, fmt.Sprintf("%s digestline/%s %s %s/runs/%s", sha[:12], image, state, s.APIURL, a.RunID))
		}
	}
	slices.Sort(statuses)
	if got := forge.wait(len(statuses)); !slices.Equal(got, statuses) {
		t.Errorf("the forge was sent:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(statuses, "\n"))
	}

	// Each image holds its directory's files at its root, and nothing else.
	for image, files := range map[string][]string{
		"acme/api": {"api.txt", "internal", "internal/handler.go"}, // its digestline.yaml is read, not packed
		"acme/web": {"index.html", "static", "static/app.css"},
	} {
		ref, err := name.ParseReference(regAddr+"/"+image+":main", name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		img, err := remote.Image(ref)
		if err != nil {
			t.Fatal(err)
		}
		if got := imageFiles(t, mutate.Extract(img)); !slices.Equal(got, files) {
			t.Errorf("%s holds %v, want %v", image, got, files)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if image == "acme/api" && cfg.Config.Labels["component"] != "api" {
			t.Errorf("acme/api was built without services/api/digestline.yaml: labels %v", cfg.Config.Labels)
		}
	}

	// The same delivery again starts no run; each run's id is its own.
	code, again := e2etest.SendGitHub(t, s.WebhookURL+"/webhooks/github", e2etest.SignGitHub(e2etest.WebhookSecret, body), "mono-1", body)
	ids := []string{acc.RunID, acc.More[0].RunID, acc.More[1].RunID}
	if code != http.StatusAccepted || again.RunID != acc.RunID || len(again.More) != 2 || again.More[0].RunID != ids[1] || again.More[1].RunID != ids[2] {
		t.Errorf("a redelivery answered %d %+v, want the same runs %v", code, again, ids)
	}
	if len(slices.Compact(slices.Sorted(slices.Values(ids)))) != 3 {
		t.Errorf("the push's runs share ids: %v", ids)
	}

	pushATagOfTheMonorepo(t, s, forge, work, filepath.Join(served, "mono.git"), len(statuses))
}

// pushATagOfTheMonorepo pushes an annotated tag of a new commit of the
// monorepo at work to its served repository, and delivers it as Bitbucket
// Data Center does, naming the tag object: each image's status goes on the
// commit its build checked out, the worker's (whose directory the commit
// lacks) failure as well, and the runs of the commit are listed by it
// (GET /v1/runs?commit=, run list --commit). sent is how many statuses the
// forge was sent before.
func pushATagOfTheMonorepo(t *testing.T, s *e2etest.Stack, forge *statusesSent, work, served string, sent int) {
	if err := os.WriteFile(filepath.Join(work, "services", "api", "api.txt"), []byte("api 1.0"), 0o644); err != nil {
		t.Fatal(err)
	}
	e2etest.Git(t, work, "commit", "--quiet", "-am", "api 1.0")
	release := e2etest.Git(t, work, "rev-parse", "HEAD")
	e2etest.Git(t, work, "tag", "-a", "v1.0.0", "-m", "release 1.0")
	tagObject := e2etest.Git(t, work, "rev-parse", "v1.0.0")
	e2etest.Git(t, work, "push", "--quiet", served, "main", "v1.0.0")
	body, _ := json.Marshal(map[string]any{"eventKey": "repo:refs_changed",
		"repository": map[string]any{"slug": "mono", "project": map[string]string{"key": "acme"},
			"links": map[string]any{"clone": []map[string]string{{"name": "http", "href": "https://bitbucket.example/scm/acme/mono.git"}}}},
		"changes": []map[string]string{{"refId": "refs/tags/v1.0.0", "fromHash": strings.Repeat("0", 40), "toHash": tagObject, "type": "ADD"}}})
	code, acc := e2etest.SendForge(t, s.WebhookURL+"/webhooks/bitbucket-server", map[string]string{"X-Event-Key": "repo:refs_changed",
		"X-Request-Id": "mono-tag", "X-Hub-Signature": e2etest.SignGitHub(e2etest.WebhookSecret, body)}, body)
	if code != http.StatusAccepted || len(acc.More) != 2 {
		t.Fatalf("a tag's push to the monorepo: %d, %d more runs, want 202 and 2", code, len(acc.More))
	}
	var want, ids []string
	for _, a := range append([]builder.WebhookAccepted{acc}, acc.More...) {
		ids = append(ids, a.RunID)
		s.RunEvents(t, a.RunID)
		var run runs.Run
		s.GetJSON(t, "/v1/runs/"+a.RunID+"/summary", &run)
		image := strings.Split(strings.TrimPrefix(run.Target, s.RegistryAddr+"/"), ":")[0]
		end, states := runs.Promoted, []string{"pending", "success"}
		if image == "acme/worker" {
			end, states = runs.Failed, []string{"failure"}
		}
		if run.Status != end || run.Commit != release {
			t.Errorf("%s's run of the tag ended %s, having checked out commit %q, want %s and %s", image, run.Status, run.Commit, end, release)
		}
		for _, state := range states {
			want = append(want, fmt.Sprintf("%s digestline/%s %s %s/runs/%s", release[:12], image, state, s.APIURL, a.RunID))
		}
	}
	slices.Sort(want)
	got := slices.DeleteFunc(forge.wait(sent+len(want)), func(status string) bool {
		return !strings.HasPrefix(status, release[:12]) && !strings.HasPrefix(status, tagObject[:12])
	})
	if !slices.Equal(got, want) {
		t.Errorf("for the tag, the forge was sent:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The commit's runs, the failed one too, and no run of the commit
	// before it.
	var page api.Page[runs.Run]
	e2etest.WaitFor(t, "the tag's three runs filed by their commit", func() bool {
		return s.GetJSON(t, "/v1/runs?commit="+release, &page) == http.StatusOK && len(page.Items) == len(ids)
	})
	listed := []string{}
	for _, run := range page.Items {
		listed = append(listed, run.ID)
	}
	if slices.Sort(listed); !slices.Equal(listed, slices.Sorted(slices.Values(ids))) {
		t.Errorf("GET /v1/runs?commit= lists %v, want the tag's runs %v", listed, ids)
	}
	// The push named the tag object: its runs are listed under that id
	// too (from their start), and CI follows them by it.
	if s.GetJSON(t, "/v1/runs?commit="+tagObject, &page) != http.StatusOK || len(page.Items) != len(ids) {
		t.Errorf("GET /v1/runs?commit=%s (the tag object the push named) lists %d runs, want the tag's %d", tagObject, len(page.Items), len(ids))
	}
	out, err := cliErr(t, "run", "follow", "--commit", tagObject, "--timeout", "1m", "--api", s.APIURL)
	var exit *exitCodeError
	if !errors.As(err, &exit) || exit.code != 2 || strings.Count(out, "[RUN] ") != len(ids) || !strings.Contains(out, "acme/worker:v1.0.0: failed") {
		t.Errorf("run follow --commit %s (the tag object): %v\n%s\nwant the tag's runs' ends, and exit 2 for the worker's", tagObject, err, out)
	}
	html := getPage(t, s.APIURL+"/runs?commit="+release)
	for _, id := range ids {
		if !strings.Contains(html, "runs of commit <code>"+release+"</code>") || !strings.Contains(html, "/runs/"+id) ||
			strings.Count(html, `commit <a href="/runs?commit=`+release+`"`) != len(ids) {
			t.Errorf("the page of the commit's runs does not list run %s, and each run's commit:\n%s", id, html)
		}
	}
	out, err = cliErr(t, "run", "list", "--commit", release, "--status", "failed", "--api", s.APIURL)
	if err != nil || strings.Count(out, "\n") != 2 || !strings.Contains(out, "acme/worker:v1.0.0") {
		t.Errorf("run list --commit %s --status failed: %v\n%s\nwant the worker's run alone", release, err, out)
	}

	// Each promotion of the api's digest records the commit it was built
	// from: dev's, by its build's run, and staging's, asked for by digest.
	image := s.RegistryAddr + "/acme/api"
	if out, err := promoteCLI(t, s, image+":dev", "staging", "--token-file", s.TokenFile); err != nil || !strings.Contains(out, ", built from commit "+release[:12]) {
		t.Fatalf("promote to staging: %v\n%s\nwant it to name the commit %s", err, out, release[:12])
	}
	for _, env := range []string{"dev", "staging"} {
		var rec api.PromotionRecord
		if s.GetJSON(t, "/v1/promotions/"+env+"/"+image, &rec) != http.StatusOK || rec.Current == nil || rec.Current.Commit != release {
			t.Errorf("%s's record of %s: %+v, want commit %s", env, image, rec.Current, release)
		}
	}
	if out := cli(t, "records", "--env", "staging", "--api", s.APIURL); !strings.Contains(out, "COMMIT") || !strings.Contains(out, " "+release[:8]+" ") {
		t.Errorf("records does not name the commit %s:\n%s", release[:8], out)
	}
}

// TestAMonorepoRuleWithPathsBuildsWhatAPushChanged: rules with paths build
// a push to a branch only when it changed one of their files, as GitHub's
// and GitLab's payloads list them; a rule without paths builds every push;
// a push whose files the payload does not all list (a new branch, a forced
// push, more commits than it lists) builds every rule.
func TestAMonorepoRuleWithPathsBuildsWhatAPushChanged(t *testing.T) {
	work := t.TempDir()
	e2etest.Git(t, work, "init", "--quiet", "--initial-branch=main")
	write := func(file, content string) {
		p := filepath.Join(work, filepath.FromSlash(file))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	commit := func(msg string) string {
		e2etest.Git(t, work, "add", ".")
		e2etest.Git(t, work, "commit", "--quiet", "-m", msg)
		return e2etest.Git(t, work, "rev-parse", "HEAD")
	}
	write("services/api/api.txt", "api")
	write("services/web/index.html", "web")
	write("libs/shared/shared.txt", "shared")
	write("README.md", "readme")
	first := commit("one")

	regAddr := fmt.Sprintf("127.0.0.1:%d", e2etest.FreePort(t))
	repo := "file://" + work
	s, _ := e2etest.StartStack(t, e2etest.WithRegistryAddr(regAddr), func(c *dev.Config) {
		c.WebhookAddr = "127.0.0.1:0"
		c.Webhook = builder.WebhookConfig{Secret: e2etest.WebhookSecret, GitLabToken: "gitlab-token-0123456789", Repositories: []builder.WebhookRule{
			{Match: "acme/mono", Git: repo, Image: regAddr + "/acme/api", Dir: "services/api", Paths: []string{"services/api/**"}},
			{Match: "acme/mono", Git: repo, Image: regAddr + "/acme/web", Dir: "services/web", Paths: []string{"services/web", "libs/shared/**"}},
			{Match: "acme/mono", Git: repo, Image: regAddr + "/acme/all"},
		}}
	})
	type commitFiles struct {
		Added    []string `json:"added"`
		Removed  []string `json:"removed"`
		Modified []string `json:"modified"`
	}
	// built sends a push and returns the images of the runs it started.
	built := func(name string, code int, acc builder.WebhookAccepted) []string {
		t.Helper()
		if code == http.StatusOK {
			return nil
		}
		if code != http.StatusAccepted {
			t.Fatalf("%s: answered %d", name, code)
		}
		var images []string
		for _, a := range append([]builder.WebhookAccepted{acc}, acc.More...) {
			var run runs.Run
			if s.GetJSON(t, "/v1/runs/"+a.RunID+"/summary", &run) != http.StatusOK {
				t.Fatalf("%s: run %s has no summary", name, a.RunID)
			}
			images = append(images, strings.Split(strings.TrimPrefix(run.Target, regAddr+"/acme/"), ":")[0])
		}
		slices.Sort(images)
		return images
	}
	github := func(delivery, before, after string, extra map[string]any, files ...commitFiles) []string {
		t.Helper()
		p := map[string]any{"ref": "refs/heads/main", "before": before, "after": after, "created": false, "deleted": false, "forced": false,
			"repository": map[string]string{"full_name": "acme/mono", "clone_url": "https://github.example/acme/mono.git"}, "commits": files}
		for k, v := range extra {
			p[k] = v
		}
		body, _ := json.Marshal(p)
		code, acc := e2etest.SendGitHub(t, s.WebhookURL+"/webhooks/github", e2etest.SignGitHub(e2etest.WebhookSecret, body), delivery, body)
		return built(delivery, code, acc)
	}
	gitlab := func(delivery, before, after string, total int, files ...commitFiles) []string {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"object_kind": "push", "ref": "refs/heads/main", "before": before, "after": after, "checkout_sha": after,
			"project": map[string]string{"path_with_namespace": "acme/mono", "git_http_url": "https://gitlab.example/acme/mono.git"},
			"commits": files, "total_commits_count": total})
		code, acc := e2etest.SendForge(t, s.WebhookURL+"/webhooks/gitlab", map[string]string{"X-Gitlab-Event": "Push Hook",
			"X-Gitlab-Event-UUID": delivery, "X-Gitlab-Token": "gitlab-token-0123456789"}, body)
		return built(delivery, code, acc)
	}
	none := []string{}

	write("libs/shared/shared.txt", "shared v2")
	second := commit("shared")
	write("README.md", "readme v2")
	third := commit("readme")
	for _, c := range []struct {
		name string
		got  []string
		want []string
	}{
		{"a new branch", github("new", strings.Repeat("0", 40), first, map[string]any{"created": true}, commitFiles{[]string{"README.md"}, []string{}, []string{}}), []string{"all", "api", "web"}},
		{"a change to a library web names", github("shared", first, second, nil, commitFiles{[]string{}, []string{}, []string{"libs/shared/shared.txt"}}), []string{"all", "web"}},
		{"a change to no service", github("readme", second, third, nil, commitFiles{[]string{}, []string{}, []string{"README.md"}}), []string{"all"}},
		{"a forced push", github("forced", second, third, map[string]any{"forced": true}, commitFiles{[]string{}, []string{}, []string{"README.md"}}), []string{"all", "api", "web"}},
		{"a sender that lists no files", github("unlisted", second, third, nil, commitFiles{}), []string{"all", "api", "web"}},
		{"GitLab: a change to the api", gitlab("gl-api", second, third, 1, commitFiles{[]string{"services/api/new.txt"}, []string{}, []string{}}), []string{"all", "api"}},
		{"GitLab: more commits than it lists", gitlab("gl-more", first, third, 21, commitFiles{[]string{}, []string{}, []string{"README.md"}}), []string{"all", "api", "web"}},
	} {
		if c.got == nil {
			c.got = none
		}
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s built %v, want %v", c.name, c.got, c.want)
		}
	}

	// CI follows a commit's runs: the pushes' record names them all, and
	// each ended promoted or superseded.
	if out, err := cliErr(t, "run", "follow", "--commit", second, "--timeout", "2m", "--api", s.APIURL); err != nil ||
		!strings.Contains(out, "/acme/all:main: ") || !strings.Contains(out, "/acme/web:main: ") || !strings.Contains(out, "every run of commit "+second[:12]+" ended well") {
		t.Errorf("run follow --commit %s: %v\n%s", second, err, out)
	}
	// A commit whose push builds nothing ends the follow at once, saying
	// why, though the follow began before the forge delivered the push.
	write("docs.md", "docs")
	skip := commit("docs [skip ci]")
	followed := cliLater(t, "run", "follow", "--commit", skip, "--timeout", "1m", "--api", s.APIURL)
	time.Sleep(2 * commitPoll) // the follow finds nothing yet
	if got := github("skip", third, skip, map[string]any{"head_commit": map[string]string{"id": skip, "message": "docs [skip ci]"}},
		commitFiles{[]string{"docs.md"}, []string{}, []string{}}); got != nil {
		t.Errorf("a [skip ci] commit built %v", got)
	}
	if f := <-followed; f.err != nil || !strings.Contains(f.out, "waiting for the first") ||
		!strings.Contains(f.out, "the push of commit "+skip[:12]+" built nothing: the pushed commit's message says [skip ci]") {
		t.Errorf("run follow --commit of a [skip ci] commit: %v\n%s", f.err, f.out)
	}
	if html := getPage(t, s.APIURL+"/runs?commit="+skip); !strings.Contains(html, "A push of this commit built nothing: the pushed commit&#39;s message says [skip ci].") {
		t.Errorf("the page of a [skip ci] commit's runs does not say why it has none:\n%s", html)
	}
	var p api.Push
	if code := s.GetJSON(t, "/v1/pushes/"+second, &p); code != http.StatusOK || len(p.Runs) != 2 || len(p.Ignored) != 0 {
		t.Errorf("GET /v1/pushes/%s: %d %+v, want its push's two runs", second, code, p)
	}
	for commit, want := range map[string]int{skip[:12]: http.StatusBadRequest, strings.Repeat("9", 40): http.StatusNotFound} {
		if code := s.GetJSON(t, "/v1/pushes/"+commit, &p); code != want {
			t.Errorf("GET /v1/pushes/%s: %d, want %d", commit, code, want)
		}
	}
}

// imageFiles lists a flattened image's files, sorted.
func imageFiles(t *testing.T, r io.ReadCloser) []string {
	t.Helper()
	defer r.Close()
	var names []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, strings.TrimPrefix(h.Name, "./"))
	}
	slices.Sort(names)
	return names
}

// restarting is a proxy to the reporter API at api that answers 503 to
// its second to fourth requests, as a reporter restarting does.
func restarting(t *testing.T, api string) string {
	u, err := url.Parse(api)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := requests.Add(1); n >= 2 && n <= 4 {
			http.Error(w, `{"error":"starting"}`, http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// statusesSent is acme/mono's commit status API on GitHub (POST
// /repos/{owner}/{repo}/statuses/{sha}) and on Bitbucket Data Center
// (POST /rest/build-status/1.0/commits/{sha}, its states in GitHub's
// words here) that keeps what it is sent, as "<sha, 12> <context or key>
// <state> <link>", sorted.
type statusesSent struct {
	mu   sync.Mutex
	sent []string
}

func (f *statusesSent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var status struct {
		State, Context, Key, URL string
		TargetURL                string `json:"target_url"`
	}
	sha := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	github := strings.HasPrefix(r.URL.Path, "/repos/acme/mono/statuses/")
	if r.Method != http.MethodPost || !github && !strings.HasPrefix(r.URL.Path, "/rest/build-status/1.0/commits/") || len(sha) != 40 ||
		json.NewDecoder(r.Body).Decode(&status) != nil {
		http.Error(w, `{"message":"Not Found"}`, http.StatusNotFound)
		return
	}
	if !github {
		status.Context, status.TargetURL = status.Key, status.URL
		status.State = map[string]string{"INPROGRESS": "pending", "SUCCESSFUL": "success", "FAILED": "failure"}[status.State]
	}
	f.mu.Lock()
	f.sent = append(f.sent, fmt.Sprintf("%s %s %s %s", sha[:12], status.Context, status.State, status.TargetURL))
	f.mu.Unlock()
	w.WriteHeader(http.StatusCreated)
}

// wait returns what was sent once n statuses were, or after 30 seconds.
func (f *statusesSent) wait(n int) []string {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		f.mu.Lock()
		done := len(f.sent) >= n
		f.mu.Unlock()
		if done {
			break
		}
	}
	time.Sleep(200 * time.Millisecond) // a status sent twice comes by now
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(slices.Values(f.sent))
}
