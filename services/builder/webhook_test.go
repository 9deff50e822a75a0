package builder

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// TestWebhooksWithoutSecretSayWhy: with no secret configured every
// delivery, a ping included, is refused with a 401 that says so, and
// names the variable that sets one.
func TestWebhooksWithoutSecretSayWhy(t *testing.T) {
	mux := http.NewServeMux()
	NewWebhooks(WebhookConfig{Repositories: []WebhookRule{{Match: "acme/app", Image: "registry.example/acme/app"}}}, nil, nil, nil).Register(mux)
	for path, headers := range map[string]map[string]string{
		"/webhooks/github":           {"X-GitHub-Event": "ping", "X-Hub-Signature-256": "sha256=00"},
		"/webhooks/gitlab":           {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "anything"},
		"/webhooks/cloudevents":      {"Authorization": "Bearer anything"},
		"/webhooks/bitbucket":        {"X-Event-Key": "repo:push", "X-Hub-Signature": "sha256=00"},
		"/webhooks/bitbucket-server": {"X-Event-Key": "diagnostics:ping", "X-Hub-Signature": "sha256=00"},
		"/webhooks/azure-devops":     {"Authorization": "Bearer anything"},
	} {
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(`{"zen":"hi"}`))
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		var body struct{ Error string }
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != http.StatusUnauthorized || !strings.Contains(body.Error, "no webhook secret is configured") || !strings.Contains(body.Error, "DIGESTLINE_WEBHOOK_SECRET") {
			t.Errorf("%s without a secret: %d %s", path, rec.Code, rec.Body)
		}
	}
}

// Bitbucket's deliveries, Cloud's and Data Center's, are refused without
// the webhook secret's signature (X-Hub-Signature), a ping included.
func TestBitbucketDeliveriesWithoutTheSecretsSignatureAreRefused(t *testing.T) {
	mux := http.NewServeMux()
	NewWebhooks(WebhookConfig{Secret: "s3cret"}, nil, nil, nil).Register(mux)
	for path, event := range map[string]string{"/webhooks/bitbucket": "repo:push", "/webhooks/bitbucket-server": "diagnostics:ping"} {
		for _, sig := range []string{"", "sha256=" + strings.Repeat("0", 64), "0123"} {
			req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(`{"test":true}`))
			req.Header.Set("X-Event-Key", event)
			if sig != "" {
				req.Header.Set("X-Hub-Signature", sig)
			}
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, req)
			if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), "X-Hub-Signature") {
				t.Errorf("%s %s signed %q: %d %s", path, event, sig, rec.Code, rec.Body)
			}
		}
	}
}

// Azure DevOps's deliveries are refused without the webhook secret as
// their basic authentication password or bearer token.
func TestAzureDevOpsDeliveriesWithoutTheSecretAreRefused(t *testing.T) {
	mux := http.NewServeMux()
	NewWebhooks(WebhookConfig{Secret: "s3cret"}, nil, nil, nil).Register(mux)
	for _, auth := range []string{"", "Bearer wrong", "Basic ZGlnZXN0bGluZTp3cm9uZw==" /* digestline:wrong */} {
		req := httptest.NewRequest(http.MethodPost, "/webhooks/azure-devops", strings.NewReader(`{"eventType":"git.push"}`))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), "basic authentication password") {
			t.Errorf("authorization %q: %d %s", auth, rec.Code, rec.Body)
		}
	}
}

// A repository URL that carries a credential is refused before anything is
// stored: in a rule's git (when the config loads) and in a CloudEvent's
// source; the refusal names the URL without it.
func TestACredentialInARepositoryURLIsRefused(t *testing.T) {
	const token = "ghp_0123456789abcdef"
	for _, url := range []string{"https://" + token + "@github.com/acme/app.git", "https://ci:" + token + "@git.example.com/app.git"} {
		file := filepath.Join(t.TempDir(), "webhooks.yaml")
		if err := os.WriteFile(file, []byte("repositories:\n  - match: acme/app\n    image: registry.example/acme/app\n    git: "+url+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadWebhookConfig(file)
		if err == nil || !strings.Contains(err.Error(), "repositories[0].git") || !strings.Contains(err.Error(), "DIGESTLINE_GIT_PASSWORD") || strings.Contains(err.Error(), token) {
			t.Errorf("a rule's git %q: %v", url, err)
		}

		mux := http.NewServeMux()
		NewWebhooks(WebhookConfig{Secret: "s3cret"}, nil, nil, nil).Register(mux)
		for _, source := range []string{`"url":"` + url + `"`, `"url":"https://mirror.example/app.git","origin":"` + url + `"`} {
			body := `{"specversion":"1.0","id":"1","source":"/ci","type":"dev.digestline.build.requested.v1","datacontenttype":"application/json",
			"data":{"source":{"kind":"git",` + source + `,"rev":"main"},"target":"registry.example/acme/app:1","spec":{}}}`
			req := httptest.NewRequest(http.MethodPost, "/webhooks/cloudevents", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer s3cret")
			req.Header.Set("Content-Type", "application/cloudevents+json")
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, req)
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "carries a credential") || strings.Contains(rec.Body.String(), token) {
				t.Errorf("a CloudEvent with %s: %d %s", source, rec.Code, rec.Body)
			}
		}
	}
}

// A rule's dir must be a directory of the repository, and two rules of
// one repository must build two images: the config says which is wrong.
func TestAMonorepoConfigSaysWhatIsWrong(t *testing.T) {
	for config, want := range map[string]string{
		"  - {match: acme/mono, image: r.example/api, dir: ../elsewhere}\n":                                               "repositories[0].dir \"../elsewhere\"",
		"  - {match: acme/mono, image: r.example/api, dir: /srv/api}\n":                                                   "repositories[0].dir \"/srv/api\"",
		"  - {match: acme/mono, image: r.example/api, paths: ['services/[api']}\n":                                        "repositories[0].paths pattern \"services/[api\" is not a valid glob",
		"  - {match: acme/mono, image: r.example/api, dir: services/api}\n  - {match: ACME/mono, image: r.example/api}\n": "repositories[1]: ACME/mono builds r.example/api twice",
	} {
		file := filepath.Join(t.TempDir(), "webhooks.yaml")
		if err := os.WriteFile(file, []byte("repositories:\n"+config), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadWebhookConfig(file); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", config, err, want)
		}
	}
	file := filepath.Join(t.TempDir(), "webhooks.yaml")
	if err := os.WriteFile(file, []byte("repositories:\n  - {match: acme/mono, image: r.example/api, dir: services/api}\n  - {match: acme/mono, image: r.example/web, dir: services/web}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err := LoadWebhookConfig(file); err != nil || len(cfg.Repositories) != 2 || cfg.Repositories[1].Dir != "services/web" {
		t.Errorf("two rules of a monorepo: %+v %v", cfg.Repositories, err)
	}
}

// A push that changes none of the files its repository's rules name is
// answered 200, saying so, and starts nothing.
func TestAPushThatChangesNoRulesPathsBuildsNothing(t *testing.T) {
	mux := http.NewServeMux()
	NewWebhooks(WebhookConfig{Secret: "s3cret", Repositories: []WebhookRule{
		{Match: "acme/mono", Image: "r.example/acme/api", Dir: "services/api", Paths: []string{"services/api/**"}},
		{Match: "acme/mono", Image: "r.example/acme/web", Dir: "services/web", Paths: []string{"services/web"}},
	}}, nil, nil, nil).Register(mux) // no bus: a build would fail the request
	body := `{"ref":"refs/heads/main","before":"` + strings.Repeat("1", 40) + `","after":"` + strings.Repeat("2", 40) + `",
		"repository":{"full_name":"acme/mono","clone_url":"https://github.example/acme/mono.git"},
		"commits":[{"added":["docs/new.md"],"removed":[],"modified":["README.md","services/webby/x"]}]}`
	rec := sendGitHub(mux, "push", "d1", "s3cret", body)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "the push changed no file the paths of r.example/acme/api, r.example/acme/web name") {
		t.Errorf("a push outside every rule's paths: %d %s", rec.Code, rec.Body)
	}

	// A push of 2,000 commits, each listing its files, is megabytes: it is
	// read whole, as GitHub sends up to 25 MB.
	commit := `{"id":"` + strings.Repeat("3", 40) + `","message":"vendor update","added":[],"removed":[],"modified":["docs/` + strings.Repeat("x", 60) + `.md"` +
		strings.Repeat(`,"docs/`+strings.Repeat("y", 60)+`.md"`, 19) + `]}`
	big := `{"ref":"refs/heads/main","before":"` + strings.Repeat("1", 40) + `","after":"` + strings.Repeat("2", 40) + `",
		"repository":{"full_name":"acme/mono","clone_url":"https://github.example/acme/mono.git"},
		"commits":[` + commit + strings.Repeat(","+commit, 1999) + `]}`
	rec = sendGitHub(mux, "push", "d2", "s3cret", big)
	if len(big) < 2<<20 || rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "the push changed no file") {
		t.Errorf("a push of %d bytes: %d %s", len(big), rec.Code, rec.Body)
	}
}

// What each push of a commit started is recorded by the commit: the runs
// of one that built, why one built nothing, each once however often the
// forge delivers it; a deleted branch records nothing.
func TestEachPushOfACommitIsRecordedWithWhatItStarted(t *testing.T) {
	srv := bustest.NewServer(t)
	mux := http.NewServeMux()
	NewWebhooks(WebhookConfig{Secret: "s3cret", Repositories: []WebhookRule{
		{Match: "acme/mono", Image: "r.example/acme/api", Dir: "services/api", Paths: []string{"services/api/**"}},
	}}, bus.NewBus(srv.JetStream, "/digestline/test"), nil, nil).Register(mux)
	commit := strings.Repeat("2", 40)
	push := func(delivery, file string) *httptest.ResponseRecorder {
		return sendGitHub(mux, "push", delivery, "s3cret", `{"ref":"refs/heads/main","before":"`+strings.Repeat("1", 40)+`","after":"`+commit+`",
			"repository":{"full_name":"acme/mono","clone_url":"https://github.example/acme/mono.git"},"commits":[{"added":[],"removed":[],"modified":["`+file+`"]}]}`)
	}
	kv, err := srv.JetStream.KeyValue(t.Context(), events.PushesBucket)
	if err != nil {
		t.Fatal(err)
	}
	recorded := func() api.Push {
		t.Helper()
		var p api.Push
		e, err := kv.Get(t.Context(), commit)
		if err != nil || json.Unmarshal(e.Value(), &p) != nil {
			t.Fatalf("the record of %s: %v", commit, err)
		}
		return p
	}
	for range 2 { // delivered again
		if rec := push("docs", "README.md"); rec.Code != http.StatusOK {
			t.Fatalf("a push outside the rule's paths: %d %s", rec.Code, rec.Body)
		}
	}
	if p := recorded(); len(p.Runs) != 0 || len(p.Ignored) != 1 || !strings.Contains(p.Ignored[0], "the push changed no file the paths of r.example/acme/api name") {
		t.Errorf("a push that built nothing is recorded as %+v, want why, once", p)
	}
	var acc WebhookAccepted
	if rec := push("api", "services/api/main.go"); rec.Code != http.StatusAccepted || json.Unmarshal(rec.Body.Bytes(), &acc) != nil {
		t.Fatalf("a push that builds: %d %s", rec.Code, rec.Body)
	}
	if p := recorded(); p.Commit != commit || !slices.Equal(p.Runs, []string{acc.RunID}) || len(p.Ignored) != 1 {
		t.Errorf("the commit pushed again, building: %+v, want run %s and the first push's reason", p, acc.RunID)
	}
	deleted := `{"ref":"refs/heads/gone","before":"` + commit + `","after":"` + strings.Repeat("0", 40) + `","deleted":true,
		"repository":{"full_name":"acme/mono","clone_url":"https://github.example/acme/mono.git"},"commits":[]}`
	sendGitHub(mux, "push", "gone", "s3cret", deleted)
	if _, err := kv.Get(t.Context(), strings.Repeat("0", 40)); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("a deleted branch was recorded: %v", err)
	}
}

// sendGitHub sends h a GitHub delivery of event, signed with secret.
func sendGitHub(h http.Handler, event, delivery, secret, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/webhooks/github", strings.NewReader(body))
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", signGitHub(secret, []byte(body)))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// signGitHub is GitHub's X-Hub-Signature-256 of body.
func signGitHub(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// A rule with branches and tags builds only those refs: main to dev, the
// version tags to staging, of one image, and a feature branch not at all,
// saying why.
func TestARulesBranchesAndTagsPickTheRefsItBuilds(t *testing.T) {
	h := NewWebhooks(WebhookConfig{Repositories: []WebhookRule{
		{Match: "acme/app", Image: "r.example/acme/app", Branches: []string{"main", "release/*"}, PromoteTo: "dev"},
		{Match: "acme/app", Image: "r.example/acme/app", Tags: []string{"v*"}, PromoteTo: "staging"},
	}}, nil, nil, nil)
	sha := strings.Repeat("a", 40)
	for ref, want := range map[string]string{
		"refs/heads/main":        "r.example/acme/app:main → dev",
		"refs/heads/release/1.2": "r.example/acme/app:release-1.2 → dev",
		"refs/tags/v1.2.0":       "r.example/acme/app:v1.2.0 → staging",
		"refs/heads/feature/x":   "refs/heads/feature/x is none of the branches and tags the rules of acme/app build (r.example/acme/app, r.example/acme/app)",
		"refs/heads/release/1/x": "refs/heads/release/1/x is none of the branches and tags the rules of acme/app build (r.example/acme/app, r.example/acme/app)",
		"refs/tags/nightly":      "refs/tags/nightly is none of the branches and tags the rules of acme/app build (r.example/acme/app, r.example/acme/app)",
	} {
		reqs, why, err := h.buildRequests(push{repo: "acme/app", ref: ref, sha: sha})
		var got []string
		for _, r := range reqs {
			got = append(got, r.Target+" → "+r.PromoteTo)
		}
		if err != nil || strings.Join(append(got, why), "") != want {
			t.Errorf("%s: %v %q %v, want %q", ref, got, why, err, want)
		}
	}

	file := filepath.Join(t.TempDir(), "webhooks.yaml")
	if err := os.WriteFile(file, []byte("repositories:\n  - {match: acme/app, image: r.example/app, branches: ['[main']}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadWebhookConfig(file); err == nil || !strings.Contains(err.Error(), `branch or tag pattern "[main"`) {
		t.Errorf("a malformed branch pattern: %v", err)
	}
}

// A rule whose git clones from a mirror builds from the mirror and names
// the repository pushed to as the source's origin (where its commit
// statuses go); a rule that clones what the forge sent names none.
func TestARuleThatClonesFromAMirrorNamesTheRepositoryPushedTo(t *testing.T) {
	const forge = "https://github.example/acme/app.git"
	h := NewWebhooks(WebhookConfig{Repositories: []WebhookRule{
		{Match: "acme/app", Image: "r.example/acme/app", Git: "https://mirror.internal/acme/app.git"},
		{Match: "acme/app", Image: "r.example/acme/web"},
		{Match: "acme/app", Image: "r.example/acme/api", Git: forge},
	}}, nil, nil, nil)
	reqs, why, err := h.buildRequests(push{repo: "acme/app", cloneURL: forge, ref: "refs/heads/main", sha: strings.Repeat("a", 40)})
	if err != nil || len(reqs) != 3 {
		t.Fatalf("%v %q %v", reqs, why, err)
	}
	for i, want := range []events.Source{
		{URL: "https://mirror.internal/acme/app.git", Origin: forge},
		{URL: forge},
		{URL: forge},
	} {
		if got := reqs[i].Source; got.URL != want.URL || got.Origin != want.Origin {
			t.Errorf("%s: url %q origin %q, want %q %q", reqs[i].Target, got.URL, got.Origin, want.URL, want.Origin)
		}
	}
}

// TestAGitHubTagPushBuildsTheCommitItTags: GitHub's push of an annotated
// tag names the tag object as after and the commit it tags as
// head_commit; the run builds, and names, the commit.
func TestAGitHubTagPushBuildsTheCommitItTags(t *testing.T) {
	srv := bustest.NewServer(t)
	mux := http.NewServeMux()
	NewWebhooks(WebhookConfig{Secret: "s3cret", Repositories: []WebhookRule{{Match: "acme/app", Image: "r.example/acme/app"}}},
		bus.NewBus(srv.JetStream, "/digestline/test"), nil, nil).Register(mux)
	tagObject, commit := strings.Repeat("7", 40), strings.Repeat("c", 40)
	body := `{"ref":"refs/tags/v1.0.0","before":"` + strings.Repeat("0", 40) + `","after":"` + tagObject + `","created":true,
		"repository":{"full_name":"acme/app","clone_url":"https://github.example/acme/app.git"},
		"commits":[],"head_commit":{"id":"` + commit + `","message":"release 1.0"}}`
	rec := sendGitHub(mux, "push", "d-tag", "s3cret", body)
	var acc WebhookAccepted
	if rec.Code != http.StatusAccepted || json.Unmarshal(rec.Body.Bytes(), &acc) != nil {
		t.Fatalf("a tag's push: %d %s", rec.Code, rec.Body)
	}
	stream, err := srv.JetStream.Stream(t.Context(), events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetLastMsgForSubject(t.Context(), events.BuildRequested.Subject(acc.RunID))
	if err != nil {
		t.Fatal(err)
	}
	ev, _, err := events.Parse(msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	got, err := events.Decode[events.BuildRequest](ev)
	if err != nil || got.Source.Rev != commit || got.Source.Ref != "refs/tags/v1.0.0" || got.Target != "r.example/acme/app:v1.0.0" {
		t.Errorf("a tag's push requested %+v (%v), want the tagged commit %s at refs/tags/v1.0.0, tagged v1.0.0", got, err, commit)
	}
}
