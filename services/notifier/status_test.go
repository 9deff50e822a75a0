package notifier_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/services/notifier"
)

// forgeAPI is the commit status endpoints of GitHub, Gitea and GitLab, as
// their documentation describes the request: GitHub's "Create a commit
// status" (POST /repos/{owner}/{repo}/statuses/{sha}: state error,
// failure, pending or success; target_url; description; context), Gitea's
// the same under /api/v1 (state pending, success, error, failure or
// warning), GitLab's "Set the pipeline status of a commit" (POST
// /projects/:id/statuses/:sha, :id the URL-encoded path: state pending,
// running, success, failed or canceled; name; target_url; description).
// A request that is not so is refused with 422, as the forges do.
type forgeAPI struct {
	mu       sync.Mutex
	statuses []string // "<forge> <repo>@<sha> <context> <state> <target> <description>"
	token    string
	// failPending answers a commit's first pending with 502, as a forge
	// that is briefly down does.
	failPending bool
	failed      map[string]bool
}

var (
	githubPath = regexp.MustCompile(`^/(github|gitea/api/v1)/repos/([^/]+/[^/]+)/statuses/([0-9a-f]{40})$`)
	gitlabPath = regexp.MustCompile(`^/gitlab/api/v4/projects/([^/]+)/statuses/([0-9a-f]{40})$`)
)

func (f *forgeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.Header.Get("Authorization") != "Bearer "+f.token && r.Header.Get("PRIVATE-TOKEN") != f.token {
		http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
		return
	}
	var body map[string]string
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, `{"message":"Problems parsing JSON"}`, http.StatusBadRequest)
		return
	}
	var forge, repo, sha, context string
	states := []string{"error", "failure", "pending", "success"}
	if m := githubPath.FindStringSubmatch(r.URL.EscapedPath()); m != nil {
		forge, repo, sha, context = strings.TrimSuffix(m[1], "/api/v1"), m[2], m[3], body["context"]
		if forge == "gitea" {
			states = append(states, "warning")
		}
	} else if m := gitlabPath.FindStringSubmatch(r.URL.EscapedPath()); m != nil {
		path, err := url.PathUnescape(m[1])
		if err != nil || !strings.Contains(m[1], "%2F") {
			http.Error(w, `{"message":"404 Project Not Found"}`, http.StatusNotFound)
			return
		}
		forge, repo, sha, context = "gitlab", path, m[2], body["name"]
		states = []string{"pending", "running", "success", "failed", "canceled"}
	} else {
		http.Error(w, `{"message":"Not Found"}`, http.StatusNotFound)
		return
	}
	if !slices.Contains(states, body["state"]) || len([]rune(body["description"])) > 140 || context == "" {
		http.Error(w, `{"message":"Validation Failed"}`, http.StatusUnprocessableEntity)
		return
	}
	f.mu.Lock()
	if f.failPending && body["state"] == "pending" && !f.failed[sha] {
		if f.failed == nil {
			f.failed = map[string]bool{}
		}
		f.failed[sha] = true
		f.mu.Unlock()
		http.Error(w, `{"message":"Server Error"}`, http.StatusBadGateway)
		return
	}
	f.statuses = append(f.statuses, fmt.Sprintf("%s %s@%s %s %s %s %s", forge, repo, sha[:7], context, body["state"], body["target_url"], body["description"]))
	f.mu.Unlock()
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write([]byte(`{"id":1}`))
}

func (f *forgeAPI) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.statuses)
}

// TestAPushsRunSetsItsCommitsStatusOnItsForge: a run started by a push
// sets its commit's status on the forge the commit is on — pending while it
// runs, success once promoted or superseded, failure when a step fails or
// a gate refuses — linking the run's page, each state once and in order
// whatever order its events are handled in; a run not started from a
// push, or from another forge's, sets none; a token the forge refuses
// dead-letters the status, saying what the token needs.
func TestAPushsRunSetsItsCommitsStatusOnItsForge(t *testing.T) {
	api := &forgeAPI{token: "forge-token"}
	hs := httptest.NewServer(api)
	defer hs.Close()
	t.Setenv("TEST_FORGE", hs.URL)
	file := filepath.Join(t.TempDir(), "notifications.yaml")
	if err := os.WriteFile(file, []byte(`webhooks:
  - name: github
    format: github-status
    url: ${TEST_FORGE}/github
    forge: github.com
    headers: {Authorization: Bearer forge-token}
  - name: gitea
    format: gitea-status
    url: ${TEST_FORGE}/gitea/api/v1
    forge: gitea.example.com
    headers: {Authorization: Bearer forge-token}
  - name: gitlab
    format: gitlab-status
    url: ${TEST_FORGE}/gitlab/api/v4
    forge: gitlab.example.com
    headers: {PRIVATE-TOKEN: forge-token}
  - name: github-wrong-token
    format: github-status
    url: ${TEST_FORGE}/github
    forge: github.example.com
    headers: {Authorization: Bearer not-the-token}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	rules, err := notifier.LoadRules(file)
	if err != nil {
		t.Fatal(err)
	}
	srv := bustest.NewServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- notifier.Run(ctx, notifier.Config{Rules: rules, Timeout: time.Second, PageURL: "https://digestline.example/",
			Deps: service.Deps{JetStream: srv.JetStream, BusOptions: []bus.Option{bus.WithRedeliveryBackoff(func(uint64) time.Duration { return 10 * time.Millisecond })}}})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	b := bus.NewBus(srv.JetStream, "/digestline/test")
	sha := func(c string) string { return strings.Repeat(c, 40) }
	digest := "sha256:" + strings.Repeat("d", 64)
	// run publishes a run: its request, from the push of repo's commit,
	// then each of then, in turn.
	run := func(id, repo, commit string, then ...func(start events.Name) (events.Name, any)) {
		t.Helper()
		src := events.Source{Kind: events.SourceGit, URL: repo, Rev: commit, Ref: "refs/heads/main"}
		if repo == "" {
			src = events.Source{Kind: events.SourceDir, Path: "/src"}
		}
		start, err := b.Start(ctx, events.BuildRequested, id, "registry.example/acme/app",
			events.BuildRequest{Source: src, Target: "registry.example/acme/app:main"})
		if err != nil {
			t.Fatal(err)
		}
		for _, next := range then {
			name, data := next(events.BuildRequested)
			ev, err := events.Follow("/digestline/test", start, name, "", data)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Publish(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	promoted := func(events.Name) (events.Name, any) {
		return events.Promoted, events.Promotion{Environment: "dev", Repository: "registry.example/acme/app", Digest: digest, PromotedAt: time.Now()}
	}
	failed := func(events.Name) (events.Name, any) {
		f := events.NewFailure(failure.Errorf(failure.Auth, "give the pusher credentials", "registry.example: 401"))
		f.Stage = "auth"
		return events.PushFailed, f
	}
	rejected := func(events.Name) (events.Name, any) {
		return events.PromotionRejected, events.Rejection{Environment: "dev", Repository: "registry.example/acme/app", Digest: digest, Gate: "freeze", Reason: "holidays", RejectedAt: time.Now()}
	}
	superseded := func(events.Name) (events.Name, any) {
		return events.Superseded, events.Supersession{Tag: "registry.example/acme/app:dev", Repository: "registry.example/acme/app", Digest: digest, By: "run-newer-0000", Step: "promote"}
	}
	run("r1", "https://github.com/acme/app.git", sha("1"), promoted, promoted) // the promotion stored twice
	run("r2", "https://gitlab.example.com/group/sub/app.git", sha("2"), failed)
	run("r3", "git@gitea.example.com:acme/app.git", sha("3"), rejected)
	run("r4", "https://github.com/acme/app", sha("4"), superseded)
	run("r5", "", "")                                                   // a directory: no commit
	run("r6", "https://bitbucket.org/acme/app.git", sha("6"), promoted) // no rule for its forge
	run("r7", "https://github.example.com/acme/app.git", sha("7"), promoted)
	tag, err := b.Start(ctx, events.BuildRequested, "r8", "registry.example/acme/app", events.BuildRequest{ // a tag's push: no status
		Source: events.Source{Kind: events.SourceGit, URL: "https://github.com/acme/app.git", Rev: sha("8"), Ref: "refs/tags/v1.0.0"}, Target: "registry.example/acme/app:v1.0.0"})
	if err != nil || tag.ID() == "" {
		t.Fatal(err)
	}

	want := []string{
		"github acme/app@1111111 digestline/acme/app pending https://digestline.example/runs/r1 building registry.example/acme/app:main",
		"github acme/app@1111111 digestline/acme/app success https://digestline.example/runs/r1 promoted to dev: sha256:dddddddddddd…",
		"gitlab group/sub/app@2222222 digestline/acme/app running https://digestline.example/runs/r2 building registry.example/acme/app:main",
		"gitlab group/sub/app@2222222 digestline/acme/app failed https://digestline.example/runs/r2 push failed at auth (auth): registry.example: 401",
		"gitea acme/app@3333333 digestline/acme/app pending https://digestline.example/runs/r3 building registry.example/acme/app:main",
		"gitea acme/app@3333333 digestline/acme/app failure https://digestline.example/runs/r3 rejected for dev at gate freeze: holidays",
		"github acme/app@4444444 digestline/acme/app pending https://digestline.example/runs/r4 building registry.example/acme/app:main",
		"github acme/app@4444444 digestline/acme/app success https://digestline.example/runs/r4 superseded by run run-newe, requested later: nothing failed",
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(api.got()) < len(want) || len(srv.DeadLetters(t)) < 2 {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // a status sent twice comes by now
	got := api.got()
	// Per commit, in the order sent: pending, then how the run ended.
	byCommit := func(list []string) []string {
		out := slices.Clone(list)
		slices.SortStableFunc(out, func(a, b string) int { return strings.Compare(strings.Fields(a)[1], strings.Fields(b)[1]) })
		return out
	}
	if !slices.Equal(byCommit(got), byCommit(want)) {
		t.Errorf("the forges were sent:\n%s\nwant:\n%s", strings.Join(byCommit(got), "\n"), strings.Join(byCommit(want), "\n"))
	}
	var dead []string
	for _, m := range srv.DeadLetters(t) {
		if m.Header.Get(bus.HeaderDLQConsumer) == "notifier-github-wrong-token" {
			dead = append(dead, m.Subject+": "+m.Header.Get(bus.HeaderDLQReason))
		}
	}
	if len(dead) != 2 || !strings.Contains(dead[0], "HTTP 401") || !strings.Contains(strings.Join(dead, ""), "cannot set statuses on acme/app") {
		t.Errorf("a refused token's statuses: %q, want r7's two dead-lettered, saying what the token needs", dead)
	}
}

// TestARunsStatusNeverGoesBackToPending: a run's pending status that the
// forge refused at first is sent again after its end was: the commit ends
// with the state its end says, and is never set to pending after it.
func TestARunsStatusNeverGoesBackToPending(t *testing.T) {
	api := &forgeAPI{token: "forge-token", failPending: true}
	hs := httptest.NewServer(api)
	defer hs.Close()
	file := filepath.Join(t.TempDir(), "notifications.yaml")
	if err := os.WriteFile(file, []byte("webhooks:\n  - {name: github, format: github-status, url: "+hs.URL+"/github, forge: github.com, headers: {Authorization: Bearer forge-token}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rules, err := notifier.LoadRules(file)
	if err != nil {
		t.Fatal(err)
	}
	srv := bustest.NewServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	b := bus.NewBus(srv.JetStream, "/digestline/test")
	// Both of each run's events are stored before the notifier starts.
	const runs = 20
	for i := range runs {
		id := fmt.Sprintf("run-%02d", i)
		start, err := b.Start(ctx, events.BuildRequested, id, "registry.example/acme/app", events.BuildRequest{
			Source: events.Source{Kind: events.SourceGit, URL: "https://github.com/acme/app.git", Rev: fmt.Sprintf("%02d", i) + strings.Repeat("0", 38), Ref: "refs/heads/main"},
			Target: "registry.example/acme/app:main"})
		if err != nil {
			t.Fatal(err)
		}
		ev, err := events.Follow("/digestline/test", start, events.Promoted, "", events.Promotion{Environment: "dev", Repository: "registry.example/acme/app",
			Digest: "sha256:" + strings.Repeat("e", 64), PromotedAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() {
		done <- notifier.Run(ctx, notifier.Config{Rules: rules, Timeout: time.Second, Deps: service.Deps{JetStream: srv.JetStream,
			BusOptions: []bus.Option{bus.WithRedeliveryBackoff(func(uint64) time.Duration { return 300 * time.Millisecond })}}})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	last := map[string]string{}
	for time.Now().Before(deadline) {
		clear(last)
		for _, s := range api.got() {
			f := strings.Fields(s)
			last[f[1]] = f[3]
		}
		if len(last) == runs && !slices.Contains(slices.Collect(maps.Values(last)), "pending") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(800 * time.Millisecond) // the pendings sent again come by now
	clear(last)
	for _, s := range api.got() {
		f := strings.Fields(s)
		if last[f[1]] == "success" {
			t.Errorf("%s was set %s after success", f[1], f[3])
		}
		last[f[1]] = f[3]
	}
	for commit, state := range last {
		if state != "success" {
			t.Errorf("%s ends %s, want success", commit, state)
		}
	}
	if len(last) != runs {
		t.Errorf("%d commits have a status, want %d", len(last), runs)
	}
}
