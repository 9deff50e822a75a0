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
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/services/notifier"
	godigest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// forgeAPI is the commit status endpoints of the forges, as their
// documentation describes the request: GitHub's "Create a commit status"
// (POST /repos/{owner}/{repo}/statuses/{sha}: state error, failure,
// pending or success; target_url; description; context), Gitea's the same
// under /api/v1 (state pending, success, error, failure or warning),
// GitLab's "Set the pipeline status of a commit" (POST
// /projects/:id/statuses/:sha, :id the URL-encoded path: state pending,
// running, success, failed or canceled; name; target_url; description),
// Bitbucket Cloud's "Create a build status for a commit" (POST
// /2.0/repositories/{workspace}/{repo}/commit/{sha}/statuses/build: key,
// of at most 40 characters as the field reports, state INPROGRESS,
// SUCCESSFUL, FAILED or STOPPED, and url required; name; description),
// Bitbucket Data Center's build status (POST
// /rest/build-status/1.0/commits/{sha}: state INPROGRESS, SUCCESSFUL or
// FAILED, key and url required) and Azure DevOps's "Statuses - Create"
// (POST /{org}/{project}/_apis/git/repositories/{repo}/commits/{sha}/statuses
// ?api-version=: state pending, succeeded, failed, error, notApplicable or
// notSet; context {genre, name}; targetUrl; description). A request that
// is not so is refused with 422 (400 where Bitbucket answers so).
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
	githubPath          = regexp.MustCompile(`^/(github|gitea/api/v1)/repos/([^/]+/[^/]+)/statuses/([0-9a-f]{40})$`)
	gitlabPath          = regexp.MustCompile(`^/gitlab/api/v4/projects/([^/]+)/statuses/([0-9a-f]{40})$`)
	bitbucketPath       = regexp.MustCompile(`^/bitbucket/2\.0/repositories/([^/]+/[^/]+)/commit/([0-9a-f]{40})/statuses/build/?$`)
	bitbucketServerPath = regexp.MustCompile(`^/bitbucket-server/rest/build-status/1\.0/commits/([0-9a-f]{40})$`)
	bitbucketHashKey    = regexp.MustCompile(`key=digestline-[0-9a-f]{29}\b`)
	azurePath           = regexp.MustCompile(`^/azure/([^/]+/[^/]+)/_apis/git/repositories/([^/]+)/commits/([0-9a-f]{40})/statuses$`)
)

func (f *forgeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, basic, _ := r.BasicAuth() // Azure DevOps: a personal access token as the password
	if r.Method != http.MethodPost || r.Header.Get("Authorization") != "Bearer "+f.token && r.Header.Get("PRIVATE-TOKEN") != f.token && basic != f.token {
		http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
		return
	}
	var body struct {
		State       string `json:"state"`
		Description string `json:"description"`
		Context     any    `json:"context"` // GitHub's, Gitea's: a string; Azure DevOps's: {genre, name}
		Name        string `json:"name"`
		Key         string `json:"key"`
		TargetURL   string `json:"target_url"`
		URL         string `json:"url"`
		AzureTarget string `json:"targetUrl"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, `{"message":"Problems parsing JSON"}`, http.StatusBadRequest)
		return
	}
	var forge, repo, sha, statusName, target string
	states := []string{"error", "failure", "pending", "success"}
	path := r.URL.EscapedPath()
	if m := githubPath.FindStringSubmatch(path); m != nil {
		name, _ := body.Context.(string)
		forge, repo, sha, statusName, target = strings.TrimSuffix(m[1], "/api/v1"), m[2], m[3], name, body.TargetURL
		if forge == "gitea" {
			states = append(states, "warning")
		}
	} else if m := gitlabPath.FindStringSubmatch(path); m != nil {
		path, err := url.PathUnescape(m[1])
		if err != nil || !strings.Contains(m[1], "%2F") {
			http.Error(w, `{"message":"404 Project Not Found"}`, http.StatusNotFound)
			return
		}
		forge, repo, sha, statusName, target = "gitlab", path, m[2], body.Name, body.TargetURL
		states = []string{"pending", "running", "success", "failed", "canceled"}
	} else if m := bitbucketPath.FindStringSubmatch(path); m != nil {
		if len(body.Key) > 40 || body.Key == "" || body.URL == "" {
			http.Error(w, fmt.Sprintf(`{"type": "error", "error": {"message": "key: Ensure this value has at most 40 characters (it has %d)."}}`, len(body.Key)), http.StatusBadRequest)
			return
		}
		forge, repo, sha, statusName, target = "bitbucket", m[1], m[2], body.Name+"|key="+body.Key, body.URL
		states = []string{"INPROGRESS", "SUCCESSFUL", "FAILED", "STOPPED"}
	} else if m := bitbucketServerPath.FindStringSubmatch(path); m != nil {
		if body.Key == "" || body.URL == "" {
			http.Error(w, `{"errors":[{"message":"key and url are required"}]}`, http.StatusBadRequest)
			return
		}
		forge, repo, sha, statusName, target = "bitbucket-server", "-", m[1], body.Name+"|key="+body.Key, body.URL
		states = []string{"INPROGRESS", "SUCCESSFUL", "FAILED"}
	} else if m := azurePath.FindStringSubmatch(path); m != nil && r.URL.Query().Get("api-version") != "" {
		ctx, _ := body.Context.(map[string]any)
		forge, repo, sha, target = "azure", m[1]+"/"+m[2], m[3], body.AzureTarget // as sent: escaped
		if genre, name := ctx["genre"], ctx["name"]; name != nil {
			statusName = fmt.Sprint(genre, "/", name)
		}
		states = []string{"notSet", "pending", "succeeded", "failed", "error", "notApplicable"}
	} else {
		http.Error(w, `{"message":"Not Found"}`, http.StatusNotFound)
		return
	}
	if !slices.Contains(states, body.State) || len([]rune(body.Description)) > 140 || statusName == "" {
		http.Error(w, `{"message":"Validation Failed"}`, http.StatusUnprocessableEntity)
		return
	}
	f.mu.Lock()
	if f.failPending && body.State == "pending" && !f.failed[sha] {
		if f.failed == nil {
			f.failed = map[string]bool{}
		}
		f.failed[sha] = true
		f.mu.Unlock()
		http.Error(w, `{"message":"Server Error"}`, http.StatusBadGateway)
		return
	}
	f.statuses = append(f.statuses, fmt.Sprintf("%s %s@%s %s %s %s %s", forge, repo, sha[:7], statusName, body.State, target, body.Description))
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
  - name: bitbucket
    format: bitbucket-status
    url: ${TEST_FORGE}/bitbucket/2.0
    forge: bitbucket.org
    headers: {Authorization: Bearer forge-token}
  - name: bitbucket-server
    format: bitbucket-server-status
    url: ${TEST_FORGE}/bitbucket-server/
    forge: bitbucket.example.com
    headers: {Authorization: Bearer forge-token}
  - name: azure
    format: azure-status
    url: ${TEST_FORGE}/azure
    forge: dev.azure.com
    headers: {Authorization: Basic OmZvcmdlLXRva2Vu} # base64 of :forge-token
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
	ctx := t.Context()
	startNotifier(t, srv, notifier.Config{Rules: rules, Timeout: time.Second, PageURL: "https://digestline.example/"}, 10*time.Millisecond)

	b := bus.NewBus(srv.JetStream, "/digestline/test")
	sha := func(c string) string { return strings.Repeat(c, 40) }
	digest := "sha256:" + strings.Repeat("d", 64)
	// run publishes a run's request, from the push of repo's commit; each
	// of then is published later, in turn, once every pending is sent (a
	// run whose end is handled first never sends its pending: the next
	// test).
	var ends []func()
	type next = func(start events.Name) (events.Name, any)
	runFrom := func(image, id string, src events.Source, then ...next) {
		t.Helper()
		start, err := b.Start(ctx, events.BuildRequested, id, "registry.example/"+image,
			events.BuildRequest{Source: src, Target: "registry.example/" + image + ":main"})
		if err != nil {
			t.Fatal(err)
		}
		for _, next := range then {
			name, data := next(events.BuildRequested)
			ev, err := events.Follow("/digestline/test", start, name, "", data)
			if err != nil {
				t.Fatal(err)
			}
			ends = append(ends, func() {
				if err := b.Publish(ctx, ev); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
	runOf := func(image, id, repo, commit string, then ...next) {
		t.Helper()
		src := events.Source{Kind: events.SourceGit, URL: repo, Rev: commit, Ref: "refs/heads/main"}
		if repo == "" {
			src = events.Source{Kind: events.SourceDir, Path: "/src"}
		}
		runFrom(image, id, src, then...)
	}
	run := func(id, repo, commit string, then ...next) { runOf("acme/app", id, repo, commit, then...) }
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
	run("r5", "", "")                                                  // a directory: no commit
	run("r6", "https://codeberg.org/acme/app.git", sha("6"), promoted) // no rule for its forge
	run("r7", "https://github.example.com/acme/app.git", sha("7"), promoted)
	run("r9", "https://bitbucket.org/acme/app.git", sha("9"), failed)
	runOf("acme/a-service-whose-name-is-longer-than-keys", "r10", "git@bitbucket.org:acme/app.git", sha("a"), promoted)
	run("r11", "https://bitbucket.example.com/scm/proj/app.git", sha("b"), rejected)
	run("r12", "https://acme@dev.azure.com/acme/My%20Project/_git/app", sha("c"), promoted)
	run("r13", "https://dev.azure.com/acme/My%20Project/_git/app", sha("e"), failed)
	run("r14", "https://dev.azure.com/acme/app.git", sha("f"), promoted) // not an Azure DevOps repository's URL
	// A rule that clones from a mirror: its statuses go to the forge the
	// push was made to (the source's origin).
	runFrom("acme/app", "r17", events.Source{Kind: events.SourceGit, URL: "https://mirror.internal/acme/app.git",
		Origin: "https://gitlab.example.com/group/mirrored.git", Rev: sha("0"), Ref: "refs/heads/main"}, promoted)
	// A mirror on a host a rule reports on: that rule reports on the
	// mirror's repository (as before requests named their origin), and the
	// origin's forge gets its statuses too.
	runFrom("acme/app", "r18", events.Source{Kind: events.SourceGit, URL: "https://gitea.example.com/mirrors/app.git",
		Origin: "https://github.com/acme/app.git", Rev: strings.Repeat("01", 20), Ref: "refs/heads/main"}, promoted)
	// A push of an annotated tag that names the tag object (sha 8), as
	// Bitbucket Data Center and Azure DevOps do: its statuses go on the
	// commit the build checked out (sha 5), from build.completed on.
	tag, err := b.Start(ctx, events.BuildRequested, "r8", "registry.example/acme/app", events.BuildRequest{
		Source: events.Source{Kind: events.SourceGit, URL: "https://github.com/acme/app.git", Rev: sha("8"), Ref: "refs/tags/v1.0.0"}, Target: "registry.example/acme/app:v1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	root := v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: godigest.Digest(digest), Size: 1}
	built, err := events.Follow("/digestline/test", tag, events.BuildCompleted, "", events.BuildResult{
		Target: "registry.example/acme/app:v1.0.0", Graph: oci.Graph{Root: root, Descriptors: []v1.Descriptor{root}},
		BlobStore: events.BlobBucket, Commit: sha("5")})
	if err == nil {
		err = b.Publish(ctx, built)
	}
	if err != nil {
		t.Fatal(err)
	}
	// Two more tags' runs: one whose build failed once it had checked out
	// its commit (sha d), which ends failed on it, and one that failed
	// before, which sets no status.
	for id, commit := range map[string]string{"r15": sha("d"), "r16": ""} {
		start, err := b.Start(ctx, events.BuildRequested, id, "registry.example/acme/app", events.BuildRequest{
			Source: events.Source{Kind: events.SourceGit, URL: "https://github.com/acme/app.git", Rev: strings.Repeat("12", 20), Ref: "refs/tags/v1.0.1"}, Target: "registry.example/acme/app:v1.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		f := events.NewFailure(failure.Errorf(failure.Input, "fix digestline.yaml", "digestline.yaml: unknown field"))
		f.Stage, f.Commit = "build", commit
		failed, err := events.Follow("/digestline/test", start, events.BuildFailed, "", f)
		if err != nil {
			t.Fatal(err)
		}
		ends = append(ends, func() {
			if err := b.Publish(ctx, failed); err != nil {
				t.Fatal(err)
			}
		})
	}
	tagPromoted, err := events.Follow("/digestline/test", tag, events.Promoted, "", events.Promotion{Environment: "prod", Repository: "registry.example/acme/app", Digest: digest, PromotedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	ends = append(ends, func() {
		if err := b.Publish(ctx, tagPromoted); err != nil {
			t.Fatal(err)
		}
	})

	want := []string{
		"github acme/app@1111111 digestline/acme/app pending https://digestline.example/runs/r1 building registry.example/acme/app:main",
		"github acme/app@1111111 digestline/acme/app success https://digestline.example/runs/r1 promoted to dev: sha256:dddddddddddd…",
		"gitlab group/sub/app@2222222 digestline/acme/app running https://digestline.example/runs/r2 building registry.example/acme/app:main",
		"gitlab group/sub/app@2222222 digestline/acme/app failed https://digestline.example/runs/r2 push failed at auth (auth): registry.example: 401",
		"gitea acme/app@3333333 digestline/acme/app pending https://digestline.example/runs/r3 building registry.example/acme/app:main",
		"gitea acme/app@3333333 digestline/acme/app failure https://digestline.example/runs/r3 rejected for dev at gate freeze: holidays",
		"github acme/app@4444444 digestline/acme/app pending https://digestline.example/runs/r4 building registry.example/acme/app:main",
		"github acme/app@4444444 digestline/acme/app success https://digestline.example/runs/r4 superseded by run run-newe, requested later: nothing failed",
		"bitbucket acme/app@9999999 digestline/acme/app|key=digestline/acme/app INPROGRESS https://digestline.example/runs/r9 building registry.example/acme/app:main",
		"bitbucket acme/app@9999999 digestline/acme/app|key=digestline/acme/app FAILED https://digestline.example/runs/r9 push failed at auth (auth): registry.example: 401",
		"bitbucket acme/app@aaaaaaa digestline/acme/a-service-whose-name-is-longer-than-keys|key=<hash> INPROGRESS https://digestline.example/runs/r10 building registry.example/acme/a-service-whose-name-is-longer-than-keys:main",
		"bitbucket acme/app@aaaaaaa digestline/acme/a-service-whose-name-is-longer-than-keys|key=<hash> SUCCESSFUL https://digestline.example/runs/r10 promoted to dev: sha256:dddddddddddd…",
		"bitbucket-server -@bbbbbbb digestline/acme/app|key=digestline/acme/app INPROGRESS https://digestline.example/runs/r11 building registry.example/acme/app:main",
		"bitbucket-server -@bbbbbbb digestline/acme/app|key=digestline/acme/app FAILED https://digestline.example/runs/r11 rejected for dev at gate freeze: holidays",
		"azure acme/My%20Project/app@ccccccc digestline/acme/app pending https://digestline.example/runs/r12 building registry.example/acme/app:main",
		"azure acme/My%20Project/app@ccccccc digestline/acme/app succeeded https://digestline.example/runs/r12 promoted to dev: sha256:dddddddddddd…",
		"azure acme/My%20Project/app@eeeeeee digestline/acme/app pending https://digestline.example/runs/r13 building registry.example/acme/app:main",
		"azure acme/My%20Project/app@eeeeeee digestline/acme/app failed https://digestline.example/runs/r13 push failed at auth (auth): registry.example: 401",
		"gitlab group/mirrored@0000000 digestline/acme/app running https://digestline.example/runs/r17 building registry.example/acme/app:main",
		"gitlab group/mirrored@0000000 digestline/acme/app success https://digestline.example/runs/r17 promoted to dev: sha256:dddddddddddd…",
		"gitea mirrors/app@0101010 digestline/acme/app pending https://digestline.example/runs/r18 building registry.example/acme/app:main",
		"gitea mirrors/app@0101010 digestline/acme/app success https://digestline.example/runs/r18 promoted to dev: sha256:dddddddddddd…",
		"github acme/app@0101010 digestline/acme/app pending https://digestline.example/runs/r18 building registry.example/acme/app:main",
		"github acme/app@0101010 digestline/acme/app success https://digestline.example/runs/r18 promoted to dev: sha256:dddddddddddd…",
		"github acme/app@5555555 digestline/acme/app pending https://digestline.example/runs/r8 built sha256:dddddddddddd…: pushing, verifying",
		"github acme/app@5555555 digestline/acme/app success https://digestline.example/runs/r8 promoted to prod: sha256:dddddddddddd…",
		"github acme/app@ddddddd digestline/acme/app failure https://digestline.example/runs/r15 build failed at build (input): digestline.yaml: unknown field",
	}
	deadline := time.Now().Add(20 * time.Second)
	pendings := slices.DeleteFunc(slices.Clone(want), func(w string) bool { return !regexp.MustCompile(` (pending|running|INPROGRESS) `).MatchString(w) })
	for len(api.got()) < len(pendings) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for _, end := range ends {
		end()
	}
	for len(api.got()) < len(want) || len(srv.DeadLetters(t)) < 4 {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // a status sent twice comes by now
	// A key longer than Bitbucket Cloud takes is sent as the same hash
	// for each of the commit's states.
	got, keys := api.got(), map[string]bool{}
	for i, status := range got {
		if key := bitbucketHashKey.FindString(status); key != "" {
			keys[key] = true
			got[i] = strings.Replace(status, key, "key=<hash>", 1)
		}
		// The tag's pending comes from its build.completed, or from its
		// build.requested when the notifier handles that once the build
		// is stored: on the same commit, in other words.
		got[i] = strings.Replace(got[i], "runs/r8 building registry.example/acme/app:v1.0.0", "runs/r8 built sha256:dddddddddddd…: pushing, verifying", 1)
	}
	if len(keys) > 1 {
		t.Errorf("a long image's statuses have keys %v, want one", keys)
	}
	// Per commit, in the order sent: pending, then how the run ended.
	byCommit := func(list []string) []string {
		out := slices.Clone(list)
		slices.SortStableFunc(out, func(a, b string) int { return strings.Compare(strings.Fields(a)[1], strings.Fields(b)[1]) })
		return out
	}
	if !slices.Equal(byCommit(got), byCommit(want)) {
		t.Errorf("the forges were sent:\n%s\nwant:\n%s", strings.Join(byCommit(got), "\n"), strings.Join(byCommit(want), "\n"))
	}
	var dead, azure []string
	for _, m := range srv.DeadLetters(t) {
		switch m.Header.Get(bus.HeaderDLQConsumer) {
		case "notifier-github-wrong-token":
			dead = append(dead, m.Subject+": "+m.Header.Get(bus.HeaderDLQReason))
		case "notifier-azure":
			azure = append(azure, m.Header.Get(bus.HeaderDLQReason))
		}
	}
	if len(azure) != 2 || !strings.Contains(azure[0], "acme/app is not an Azure DevOps repository's path (ORG/PROJECT/_git/REPO)") {
		t.Errorf("statuses of a repository not on Azure DevOps: %q, want r14's two dead-lettered, saying so", azure)
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
	ctx := t.Context()
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
	startNotifier(t, srv, notifier.Config{Rules: rules, Timeout: time.Second}, 300*time.Millisecond)
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

// TestABitbucketStatusNeedsThePagesURL: Bitbucket refuses a status without
// its link, so a notifier with a Bitbucket rule and no page to link does
// not start, and says what to set.
func TestABitbucketStatusNeedsThePagesURL(t *testing.T) {
	file := filepath.Join(t.TempDir(), "notifications.yaml")
	if err := os.WriteFile(file, []byte("webhooks:\n  - {name: bb, format: bitbucket-server-status, url: https://bitbucket.example.com}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rules, err := notifier.LoadRules(file)
	if err != nil {
		t.Fatal(err)
	}
	srv := bustest.NewServer(t)
	err = notifier.Run(context.Background(), notifier.Config{Rules: rules, Deps: service.Deps{JetStream: srv.JetStream}})
	if err == nil || !strings.Contains(err.Error(), "set DIGESTLINE_API_URL") {
		t.Fatalf("a Bitbucket rule without the page's URL: %v, want it refused, naming DIGESTLINE_API_URL", err)
	}
}
