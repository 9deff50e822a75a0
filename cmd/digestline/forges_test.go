package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/digestline/digestline/cmd/digestline/internal/dev"
	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/digestline/digestline/services/builder"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestForgeExamplePayloads delivers GitHub's, GitLab's, Gitea's,
// Bitbucket's (Cloud and Data Center) and Azure DevOps's example payloads
// (testdata/forges),
// as the forges send them (Gitea and Forgejo with their headers, to the
// GitHub endpoint), for a bare
// repository whose HEAD names a branch that does not exist: each push
// fetches exactly its ref, builds the pushed commit and is tagged as
// docs/webhooks.md says; a push of two refs builds both; a deleted tag or
// branch and a ping build nothing.
func TestForgeExamplePayloads(t *testing.T) {
	work, _ := e2etest.GitRepo(t, "main: not what the examples push")
	e2etest.Git(t, work, "checkout", "--quiet", "-b", "master")
	if err := os.WriteFile(filepath.Join(work, "app.txt"), []byte("master"), 0o644); err != nil {
		t.Fatal(err)
	}
	e2etest.Git(t, work, "commit", "--quiet", "-am", "master")
	master := e2etest.Git(t, work, "rev-parse", "HEAD")
	e2etest.Git(t, work, "tag", "-a", "v1.0.0", "-m", "release")
	tagObject := e2etest.Git(t, work, "rev-parse", "v1.0.0") // the annotated tag's own id, which some forges send
	e2etest.Git(t, work, "branch", "develop")                // what Gitea's example pushes
	e2etest.Git(t, work, "branch", "name-of-branch")         // and Bitbucket Cloud's
	bare := filepath.Join(t.TempDir(), "app.git")
	e2etest.Git(t, work, "clone", "--quiet", "--bare", work, bare)
	e2etest.Git(t, bare, "symbolic-ref", "HEAD", "refs/heads/gone")

	regAddr := fmt.Sprintf("127.0.0.1:%d", e2etest.FreePort(t))
	s, _ := e2etest.StartStack(t, e2etest.WithRegistryAddr(regAddr), func(c *dev.Config) {
		c.WebhookAddr = "127.0.0.1:0"
		c.Webhook = builder.WebhookConfig{Secret: e2etest.WebhookSecret, GitLabToken: "gitlab-token-0123456789",
			Repositories: []builder.WebhookRule{
				{Match: "Codertocat/Hello-World", Image: regAddr + "/codertocat/hello"},
				{Match: "mike/diaspora", Image: regAddr + "/mike/diaspora", Tag: "{branch}-{sha}"},
				{Match: "jsmith/example", Image: regAddr + "/jsmith/example"},
				{Match: "gitea/webhooks", Image: regAddr + "/gitea/webhooks"},
				{Match: "team_name/repo_name", Image: regAddr + "/team/repo", Git: "file://" + bare}, // Cloud's payload names no clone URL
				{Match: "MYPROJECT/test-repo", Image: regAddr + "/myproject/test-repo"},
				{Match: "Fabrikam-Fiber-Git/Fabrikam-Fiber-Git", Image: regAddr + "/fabrikam/fiber"},
			}}
	})
	clone := "file://" + bare
	bitbucketChange := func(p map[string]any) map[string]any {
		return field(p, "push")["changes"].([]any)[0].(map[string]any)
	}

	for i, tc := range []struct {
		file, event string
		adjust      func(p map[string]any)
		want        int
		image, tag  string // the build it starts, when want is 202
		more        int    // the builds of the push's other refs
	}{
		{"github-ping.json", "ping", nil, http.StatusOK, "", "", 0},
		{"github-push-deleted-tag.json", "push", func(p map[string]any) { field(p, "repository")["clone_url"] = clone }, http.StatusOK, "", "", 0},
		{"github-push-new-branch.json", "push", func(p map[string]any) {
			p["after"] = master
			field(p, "repository")["clone_url"] = clone
		}, http.StatusAccepted, "codertocat/hello", "master", 0},
		{"gitlab-push.json", "Push Hook", func(p map[string]any) {
			p["after"], p["checkout_sha"] = master, master
			field(p, "project")["git_http_url"] = clone
		}, http.StatusAccepted, "mike/diaspora", "master-" + master[:12], 0},
		// A commit whose message says [skip ci] (or [ci skip], [no ci],
		// [skip digestline]) builds nothing, on each forge that sends it.
		{"github-push-new-branch.json", "push", func(p map[string]any) {
			p["after"] = master
			field(p, "repository")["clone_url"] = clone
			field(p, "head_commit")["message"] = "Initial commit [skip ci]"
		}, http.StatusOK, "", "", 0},
		{"gitlab-push.json", "Push Hook", func(p map[string]any) {
			p["after"], p["checkout_sha"] = master, master
			head := p["commits"].([]any)[1].(map[string]any)
			head["id"], head["message"] = master, "fixed readme\n\n[CI SKIP]"
		}, http.StatusOK, "", "", 0},
		{"bitbucket-push.json", "repo:push", func(p map[string]any) {
			target := field(bitbucketChange(p), "new")["target"].(map[string]any)
			target["hash"], target["message"] = master, "new commit message [no ci]\n"
		}, http.StatusOK, "", "", 0},
		{"azure-devops-git-push.json", "git.push", func(p map[string]any) {
			update := field(p, "resource")["refUpdates"].([]any)[0].(map[string]any)
			update["name"], update["newObjectId"] = "refs/heads/master", master
			commit := field(p, "resource")["commits"].([]any)[0].(map[string]any)
			commit["commitId"], commit["comment"] = master, "Fixed bug in web.config file [skip digestline]"
		}, http.StatusOK, "", "", 0},
		{"gitlab-tag-push.json", "Tag Push Hook", func(p map[string]any) {
			p["after"], p["checkout_sha"] = master, master
			field(p, "project")["git_http_url"] = clone
		}, http.StatusAccepted, "jsmith/example", "v1.0.0", 0},
		{"gitea-push.json", "gitea", func(p map[string]any) {
			p["after"] = master
			field(p, "repository")["clone_url"] = clone
		}, http.StatusAccepted, "gitea/webhooks", "develop", 0},
		{"gitea-push.json", "gitea", func(p map[string]any) { // a deleted branch: after is no commit
			p["after"] = strings.Repeat("0", 40)
			field(p, "repository")["clone_url"] = clone
		}, http.StatusOK, "", "", 0},
		{"bitbucket-push.json", "repo:push", func(p map[string]any) {
			field(bitbucketChange(p), "new")["target"].(map[string]any)["hash"] = master
		}, http.StatusAccepted, "team/repo", "name-of-branch", 0},
		{"bitbucket-push.json", "repo:push", func(p map[string]any) { // a branch and a tag at once
			change := bitbucketChange(p)
			field(change, "new")["target"].(map[string]any)["hash"] = master
			b, _ := json.Marshal(change)
			var tag map[string]any
			_ = json.Unmarshal(b, &tag)
			field(tag, "new")["type"], field(tag, "new")["name"] = "tag", "v1.0.0"
			field(p, "push")["changes"] = []any{change, tag}
		}, http.StatusAccepted, "team/repo", "name-of-branch", 1},
		{"bitbucket-push.json", "repo:push", func(p map[string]any) { bitbucketChange(p)["new"] = nil }, http.StatusOK, "", "", 0},
		{"bitbucket-server-refs-changed.json", "repo:refs_changed", func(p map[string]any) {
			field(field(p, "repository"), "links")["clone"].([]any)[1].(map[string]any)["href"] = clone
			p["changes"].([]any)[0].(map[string]any)["toHash"] = master
		}, http.StatusAccepted, "myproject/test-repo", "master", 0},
		{"bitbucket-server-refs-changed.json", "repo:refs_changed", func(p map[string]any) { // an annotated tag: its object, not its commit
			field(field(p, "repository"), "links")["clone"].([]any)[1].(map[string]any)["href"] = clone
			change := p["changes"].([]any)[0].(map[string]any)
			change["ref"] = map[string]any{"id": "refs/tags/v1.0.0", "displayId": "v1.0.0", "type": "TAG"}
			change["refId"], change["type"], change["fromHash"], change["toHash"] = "refs/tags/v1.0.0", "ADD", strings.Repeat("0", 40), tagObject
		}, http.StatusAccepted, "myproject/test-repo", "v1.0.0", 0},
		{"bitbucket-server-refs-changed.json", "repo:refs_changed", func(p map[string]any) {
			change := p["changes"].([]any)[0].(map[string]any)
			change["type"], change["toHash"] = "DELETE", strings.Repeat("0", 40)
		}, http.StatusOK, "", "", 0},
		{"bitbucket-server-refs-changed.json", "diagnostics:ping", nil, http.StatusOK, "", "", 0},
		{"azure-devops-git-push.json", "git.push", func(p map[string]any) {
			update := field(p, "resource")["refUpdates"].([]any)[0].(map[string]any)
			update["name"], update["newObjectId"] = "refs/heads/master", master
			field(field(p, "resource"), "repository")["remoteUrl"] = clone
		}, http.StatusAccepted, "fabrikam/fiber", "master", 0},
		{"azure-devops-git-push.json", "git.push", func(p map[string]any) { // a deleted branch
			field(p, "resource")["refUpdates"].([]any)[0].(map[string]any)["newObjectId"] = strings.Repeat("0", 40)
		}, http.StatusOK, "", "", 0},
	} {
		t.Run(tc.file, func(t *testing.T) {
			body := forgePayload(t, tc.file, tc.adjust)
			var code int
			var acc builder.WebhookAccepted
			switch tc.event {
			case "gitea":
				code, acc = e2etest.SendForge(t, s.WebhookURL+"/webhooks/github", giteaHeaders(i, body), body)
			case "repo:push":
				code, acc = e2etest.SendForge(t, s.WebhookURL+"/webhooks/bitbucket", map[string]string{"X-Event-Key": tc.event,
					"X-Request-UUID": fmt.Sprintf("bb-%d", i), "X-Hook-UUID": "{hook}", "X-Attempt-Number": "1",
					"X-Hub-Signature": e2etest.SignGitHub(e2etest.WebhookSecret, body)}, body)
			case "git.push": // the subscription's basic authentication, the secret its password
				code, acc = e2etest.SendForge(t, s.WebhookURL+"/webhooks/azure-devops", map[string]string{
					"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("digestline:"+e2etest.WebhookSecret))}, body)
			case "repo:refs_changed", "diagnostics:ping":
				code, acc = e2etest.SendForge(t, s.WebhookURL+"/webhooks/bitbucket-server", map[string]string{"X-Event-Key": tc.event,
					"X-Request-Id": fmt.Sprintf("bbs-%d", i), "X-Hub-Signature": e2etest.SignGitHub(e2etest.WebhookSecret, body)}, body)
			case "push", "ping":
				code, acc = e2etest.SendForge(t, s.WebhookURL+"/webhooks/github", map[string]string{"X-GitHub-Event": tc.event,
					"X-GitHub-Delivery": "gh-" + tc.file, "X-Hub-Signature-256": e2etest.SignGitHub(e2etest.WebhookSecret, body)}, body)
			default:
				code, acc = e2etest.SendForge(t, s.WebhookURL+"/webhooks/gitlab", map[string]string{"X-Gitlab-Event": tc.event,
					"X-Gitlab-Event-UUID": "gl-" + tc.file, "X-Gitlab-Token": "gitlab-token-0123456789"}, body)
			}
			if code != tc.want {
				t.Fatalf("answered %d, want %d", code, tc.want)
			}
			if tc.want != http.StatusAccepted {
				if acc.RunID != "" {
					t.Fatalf("started run %s", acc.RunID)
				}
				return
			}
			if acc.RunURL != s.APIURL+"/runs/"+acc.RunID {
				t.Errorf("the answer links the run at %q", acc.RunURL)
			}
			if len(acc.More) != tc.more {
				t.Fatalf("the answer names %d more runs, want %d", len(acc.More), tc.more)
			}
			// The runs of one push promote to one tag of the environment:
			// they take turns, and one may end superseded by the other.
			promoted := 0
			for _, run := range append([]builder.WebhookAccepted{acc}, acc.More...) {
				evs := s.RunEvents(t, run.RunID)
				n, _ := events.NameOfType(evs[len(evs)-1]["type"].(string))
				if n != events.Promoted && (n != events.Superseded || tc.more == 0) {
					t.Fatalf("run %s ended with %s: %v", run.RunID, n, evs[len(evs)-1]["data"])
				}
				if n == events.Promoted {
					promoted++
				}
			}
			if promoted == 0 {
				t.Fatal("no run of the push was promoted")
			}
			// The run says what it built: the repository, the ref, what the
			// push named (a commit, or an annotated tag), and the commit.
			var run runs.Run
			if s.GetJSON(t, "/v1/runs/"+acc.RunID+"/summary", &run) != http.StatusOK || !strings.Contains(run.Source, " refs/") ||
				!strings.HasSuffix(run.Source, " at "+master[:12]) && !strings.HasSuffix(run.Source, " at "+tagObject[:12]) {
				t.Errorf("the run's source reads %q, want the repository, the ref and what was pushed (%s)", run.Source, master[:12])
			}
			if run.Commit != master {
				t.Errorf("the run says it built commit %q, want %s", run.Commit, master)
			}
			var shown bytes.Buffer
			printRun(&shown, &run, s.APIURL)
			if page := getPage(t, s.APIURL+"/runs/"+acc.RunID); !strings.Contains(page, "<dt>commit</dt><dd><code>"+master+"</code> · <a href=\"/runs?commit="+master+"\">its runs</a>") ||
				!strings.Contains(shown.String(), "  commit   "+master+"\n") {
				t.Errorf("the run's page and run show do not name the commit built, %s:\n%s\n%s", master, page, shown.String())
			}
			if got := revisionOf(t, regAddr+"/"+tc.image+":"+tc.tag); got != master {
				t.Fatalf("%s:%s was built from %q, want the pushed commit %s", tc.image, tc.tag, got, master)
			}
		})
	}
}

// giteaHeaders are the headers Gitea and Forgejo send with a push
// (services/webhook/shared/payloader.go in Forgejo, deliver.go in Gitea):
// their own, Gogs's, and GitHub's, signed alike.
func giteaHeaders(delivery int, body []byte) map[string]string {
	sig := e2etest.SignGitHub(e2etest.WebhookSecret, body)
	id := fmt.Sprintf("f6266f16-1bf3-46a5-9ea4-%012d", delivery)
	h := map[string]string{"X-Hub-Signature-256": sig, "X-GitHub-Delivery": id, "X-GitHub-Event": "push", "X-GitHub-Event-Type": "push"}
	for _, forge := range []string{"Forgejo", "Gitea", "Gogs"} {
		h["X-"+forge+"-Delivery"], h["X-"+forge+"-Event"], h["X-"+forge+"-Event-Type"] = id, "push", "push"
		h["X-"+forge+"-Signature"] = strings.TrimPrefix(sig, "sha256=")
	}
	return h
}

// forgePayload reads an example payload and applies adjust to it.
func forgePayload(t *testing.T, file string, adjust func(map[string]any)) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "forges", file))
	if err != nil {
		t.Fatal(err)
	}
	if adjust == nil {
		return b
	}
	var p map[string]any
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	adjust(p)
	out, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func field(p map[string]any, key string) map[string]any { return p[key].(map[string]any) }

// revisionOf is the org.opencontainers.image.revision annotation of ref's
// manifest.
func revisionOf(t *testing.T, ref string) string {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(r)
	if err != nil {
		t.Fatal(err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	return m.Annotations[v1.AnnotationRevision]
}
