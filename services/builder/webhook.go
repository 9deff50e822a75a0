package builder

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/pkg/tags"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"sigs.k8s.io/yaml"
)

// MaxWebhookBody bounds a webhook's body; GitHub's own limit is 25 MB, but
// a push event that starts a build is a few kilobytes.
const MaxWebhookBody = 1 << 20

// WebhookConfig maps repositories that send webhooks to what is built.
type WebhookConfig struct {
	// Secret checks GitHub's X-Hub-Signature-256 and Bitbucket's
	// X-Hub-Signature (HMAC-SHA256 of the body), and is the bearer token
	// of /webhooks/cloudevents and the password of Azure DevOps's.
	Secret string `json:"-"`
	// GitLabToken is compared with GitLab's X-Gitlab-Token.
	GitLabToken string `json:"-"`
	// PageURL is the reporter's base URL (DIGESTLINE_API_URL): an accepted
	// webhook answers with its run's page there.
	PageURL string `json:"-"`
	// RegistryToken authenticates registries' notifications
	// (/webhooks/registry/…: registryhooks.go), as a bearer token or in
	// the URL's token parameter.
	RegistryToken string `json:"-"`
	// Repositories lists what to build for which repository.
	Repositories []WebhookRule `json:"repositories"`
	// Images lists which images other tools push are admitted
	// (admissions.go).
	Images []AdmissionRule `json:"images"`
	// Watches lists repositories whose registries send no notifications:
	// their tags are read on an interval instead (watch.go).
	Watches []WatchRule `json:"watches"`
}

// WebhookRule says how a push to one repository becomes a build.
type WebhookRule struct {
	// Match is the repository as the forge names it: owner/name on GitHub,
	// Gitea and Forgejo, group/project on GitLab, workspace/repository on
	// Bitbucket Cloud, PROJECT/repository on Bitbucket Data Center,
	// project/repository on Azure DevOps.
	Match string `json:"match"`
	// Git is the URL to clone (default: the clone URL the webhook carries).
	Git string `json:"git"`
	// Image is the image repository to push to, e.g. registry.example.com/team/app.
	Image string `json:"image"`
	// Tag is the image tag: {tag} (the git tag), {branch}, {sha} (12
	// characters) are replaced. Default: the git tag for a tag push, the
	// branch name otherwise.
	Tag string `json:"tag"`
	// PromoteTo is the environment the run promotes to (default: the first).
	PromoteTo string `json:"promoteTo"`
	// Dir is the directory of the repository to build, e.g. services/api
	// of a monorepo (default: the whole repository). Several rules may
	// match one repository: a push builds each one's image.
	Dir string `json:"dir"`
	// Paths, when set, build a push to a branch only when it changed a
	// file one of them matches (globs as digestline.yaml's), as far as the
	// forge's payload lists the files; a push whose files it does not list
	// (a new branch, a forced push, a tag, Bitbucket's and Azure DevOps's)
	// builds.
	Paths []string `json:"paths"`
}

// LoadWebhookConfig reads the rules from a YAML file (strict: an unknown key
// is an error), the secrets from DIGESTLINE_WEBHOOK_SECRET and
// DIGESTLINE_GITLAB_TOKEN, and the page's URL from DIGESTLINE_API_URL.
func LoadWebhookConfig(path string) (WebhookConfig, error) {
	cfg := WebhookConfig{Secret: os.Getenv("DIGESTLINE_WEBHOOK_SECRET"), GitLabToken: os.Getenv("DIGESTLINE_GITLAB_TOKEN"),
		RegistryToken: os.Getenv("DIGESTLINE_REGISTRY_WEBHOOK_TOKEN"), PageURL: strings.TrimSuffix(os.Getenv("DIGESTLINE_API_URL"), "/")}
	if path == "" {
		return cfg, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("webhook config: %w", err)
	}
	if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
		return cfg, fmt.Errorf("webhook config %s: %w", path, err)
	}
	for i, r := range cfg.Repositories {
		if r.Match == "" || r.Image == "" {
			return cfg, fmt.Errorf("webhook config %s: repositories[%d] needs match and image", path, i)
		}
		if _, err := name.NewRepository(r.Image); err != nil {
			return cfg, fmt.Errorf("webhook config %s: repositories[%d].image: %w", path, i, err)
		}
		if err := noCredentialIn(r.Git); err != nil {
			return cfg, fmt.Errorf("webhook config %s: repositories[%d].git: %w", path, i, err)
		}
		if r.Dir != "" && !filepath.IsLocal(filepath.FromSlash(r.Dir)) {
			return cfg, fmt.Errorf("webhook config %s: repositories[%d].dir %q: a directory of the repository, relative to its root (services/api)", path, i, r.Dir)
		}
		if err := oci.ValidatePatterns("repositories["+strconv.Itoa(i)+"].paths", r.Paths); err != nil {
			return cfg, fmt.Errorf("webhook config %s: %w", path, err)
		}
		for _, o := range cfg.Repositories[:i] {
			if strings.EqualFold(o.Match, r.Match) && o.Image == r.Image {
				return cfg, fmt.Errorf("webhook config %s: repositories[%d]: %s builds %s twice: give each rule of a repository its own image", path, i, r.Match, r.Image)
			}
		}
	}
	for i := range cfg.Images {
		if err := cfg.Images[i].load(); err != nil {
			return cfg, fmt.Errorf("webhook config %s: images[%d]: %w", path, i, err)
		}
	}
	for i := range cfg.Watches {
		if err := cfg.Watches[i].load(); err != nil {
			return cfg, fmt.Errorf("webhook config %s: watches[%d]: %w", path, i, err)
		}
	}
	return cfg, nil
}

// Webhooks turns forge webhooks and CloudEvents into build.requested. It
// answers 202 only once the event is stored in JetStream; a delivery sent
// again (same delivery id) is the same run, stored once.
type Webhooks struct {
	cfg      WebhookConfig
	bus      *bus.Bus
	registry *registry.Client // reads the digest of a tag a registry's notification names alone
	tags     *tags.Ledger     // the pipeline's own moves of tags, which registries notify of too
}

// NewWebhooks returns the ingress publishing on bus; reg reads what a
// registry's notification does not say (nil: such notifications fail),
// and moves are the pipeline's own moves of tags, whose notifications
// admit nothing (nil: every push is someone else's).
func NewWebhooks(cfg WebhookConfig, b *bus.Bus, reg *registry.Client, moves *tags.Ledger) *Webhooks {
	return &Webhooks{cfg: cfg, bus: b, registry: reg, tags: moves}
}

// Register adds the webhook endpoints to mux.
func (h *Webhooks) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /webhooks/github", h.github)
	mux.HandleFunc("POST /webhooks/gitlab", h.gitlab)
	mux.HandleFunc("POST /webhooks/bitbucket", h.bitbucket)
	mux.HandleFunc("POST /webhooks/bitbucket-server", h.bitbucketServer)
	mux.HandleFunc("POST /webhooks/azure-devops", h.azureDevOps)
	mux.HandleFunc("POST /webhooks/cloudevents", h.cloudevents)
	h.registerRegistries(mux)
}

// WebhookAccepted is the answer to an accepted webhook.
type WebhookAccepted struct {
	RunID   string `json:"runId"`
	EventID string `json:"eventId"`
	// RunURL is the run's page, when the reporter's URL is known.
	RunURL string `json:"runUrl,omitempty"`
	// More are the runs of the other refs of a push of several
	// (Bitbucket sends them in one delivery).
	More []WebhookAccepted `json:"more,omitempty"`
}

// configured reports whether the endpoint's secret is set; while it is
// not, every request is answered 401 saying so.
func configured(w http.ResponseWriter, secret string) bool {
	if secret == "" {
		reply(w, http.StatusUnauthorized, noSecret)
	}
	return secret != ""
}

// noSecret is the answer to every webhook while none is configured.
const noSecret = "no webhook secret is configured, so every request is refused: start the builder (or digestline dev) with DIGESTLINE_WEBHOOK_SECRET set (DIGESTLINE_GITLAB_TOKEN for GitLab; docs/webhooks.md)"

// push is what a forge's push event says, once read.
type push struct {
	repo, cloneURL, ref, sha string
	// changed are the files the push changed, when listed says the
	// payload names them all (rules with paths build only when one of
	// theirs is among them).
	changed []string
	listed  bool
}

// pushedCommit is a commit of a push as GitHub, Gitea and GitLab list it.
type pushedCommit struct {
	Added    []string `json:"added"`
	Removed  []string `json:"removed"`
	Modified []string `json:"modified"`
}

// changedFiles are the files the commits add, remove or modify, and
// whether every commit lists them (a sender that leaves the lists out
// lists nothing).
func changedFiles(commits []pushedCommit) ([]string, bool) {
	var files []string
	for _, c := range commits {
		if c.Added == nil || c.Removed == nil || c.Modified == nil {
			return nil, false
		}
		files = slices.Concat(files, c.Added, c.Removed, c.Modified)
	}
	return files, len(commits) > 0
}

func (h *Webhooks) github(w http.ResponseWriter, r *http.Request) {
	body, ok := h.signedBody(w, r, "X-Hub-Signature-256")
	if !ok {
		return
	}
	switch r.Header.Get("X-GitHub-Event") {
	case "ping":
		reply(w, http.StatusOK, "pong")
		return
	case "push":
	case "registry_package", "package": // a container pushed to GitHub's registry (registryhooks.go)
		images, err := gitHubPackage(r.Header.Get("X-GitHub-Delivery"), body)
		if err != nil {
			reply(w, http.StatusBadRequest, "not a GitHub package event: "+err.Error())
			return
		}
		if len(images) == 0 {
			reply(w, http.StatusOK, "ignored: only a container's published version is admitted")
			return
		}
		h.admit(w, r, events.SenderGitHub, images)
		return
	default:
		reply(w, http.StatusOK, "ignored: only push events (branches and tags) start builds, and package events admit images")
		return
	}
	var ev struct {
		Ref        string `json:"ref"`
		Before     string `json:"before"`
		After      string `json:"after"`
		Created    bool   `json:"created"`
		Deleted    bool   `json:"deleted"`
		Forced     bool   `json:"forced"`
		Repository struct {
			FullName string `json:"full_name"`
			CloneURL string `json:"clone_url"`
		} `json:"repository"`
		Commits []pushedCommit `json:"commits"`
		// Gitea and Forgejo count the commits they may not all list.
		TotalCommits *int `json:"total_commits"`
	}
	if err := json.Unmarshal(body, &ev); err != nil || ev.Ref == "" || ev.Repository.FullName == "" {
		reply(w, http.StatusBadRequest, "a GitHub push event has ref, after and repository.full_name")
		return
	}
	// GitHub says deleted; a sender that does not (Gitea, Forgejo) names
	// git's null commit after the push. (A payload made by hand may name
	// none: its ref's head builds.)
	if ev.Deleted || ev.After != "" && nullCommit(ev.After) {
		reply(w, http.StatusOK, "ignored: a deleted ref builds nothing")
		return
	}
	// The files are all listed for a push to a branch that existed, not
	// forced, of fewer commits than GitHub lists (2048) or, from Gitea,
	// all of them.
	changed, listed := changedFiles(ev.Commits)
	listed = listed && strings.HasPrefix(ev.Ref, "refs/heads/") && !ev.Created && !ev.Forced && ev.Before != "" && !nullCommit(ev.Before) &&
		len(ev.Commits) < 2048 && (ev.TotalCommits == nil || *ev.TotalCommits == len(ev.Commits))
	h.request(w, r, "github/"+r.Header.Get("X-GitHub-Delivery"), push{repo: ev.Repository.FullName, cloneURL: ev.Repository.CloneURL,
		ref: ev.Ref, sha: ev.After, changed: changed, listed: listed})
}

func (h *Webhooks) gitlab(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	if !configured(w, h.cfg.GitLabToken) {
		return
	}
	if !service.SameSecret(r.Header.Get("X-Gitlab-Token"), h.cfg.GitLabToken) {
		reply(w, http.StatusUnauthorized, "bad or missing X-Gitlab-Token")
		return
	}
	var ev struct {
		Ref         string `json:"ref"`
		Before      string `json:"before"`
		CheckoutSHA string `json:"checkout_sha"`
		Project     struct {
			Path    string `json:"path_with_namespace"`
			HTTPURL string `json:"git_http_url"`
		} `json:"project"`
		Commits      []pushedCommit `json:"commits"` // the last 20
		TotalCommits int            `json:"total_commits_count"`
	}
	if err := json.Unmarshal(body, &ev); err != nil || ev.Ref == "" || ev.Project.Path == "" {
		reply(w, http.StatusBadRequest, "a GitLab push event has ref, checkout_sha and project.path_with_namespace")
		return
	}
	if ev.CheckoutSHA == "" {
		reply(w, http.StatusOK, "ignored: a deleted ref builds nothing")
		return
	}
	delivery := cmp.Or(r.Header.Get("X-Gitlab-Event-UUID"), r.Header.Get("Idempotency-Key"))
	changed, listed := changedFiles(ev.Commits)
	listed = listed && strings.HasPrefix(ev.Ref, "refs/heads/") && ev.Before != "" && !nullCommit(ev.Before) && ev.TotalCommits == len(ev.Commits)
	h.request(w, r, "gitlab/"+delivery, push{repo: ev.Project.Path, cloneURL: ev.Project.HTTPURL, ref: ev.Ref, sha: ev.CheckoutSHA,
		changed: changed, listed: listed})
}

// cloudevents takes a build.requested CloudEvent in binary or structured
// mode, with the webhook secret as bearer token; its id dedupes deliveries.
func (h *Webhooks) cloudevents(w http.ResponseWriter, r *http.Request) {
	if !configured(w, h.cfg.Secret) {
		return
	}
	if !service.SameSecret(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), h.cfg.Secret) {
		reply(w, http.StatusUnauthorized, "bearer token required (the webhook secret)")
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	ev, err := cloudevents.NewEventFromHTTPRequest(r)
	if err != nil {
		reply(w, http.StatusBadRequest, "not a CloudEvent (binary or structured mode): "+err.Error())
		return
	}
	if n, ok := events.NameOfType(ev.Type()); !ok || n != events.BuildRequested {
		reply(w, http.StatusBadRequest, fmt.Sprintf("type %q: only %s starts a run", ev.Type(), events.BuildRequested.Type()))
		return
	}
	req, err := events.Decode[events.BuildRequest](*ev)
	if err == nil && req.Source.Kind == events.SourceGit {
		err = noCredentialIn(req.Source.URL)
	}
	if err != nil {
		reply(w, http.StatusBadRequest, err.Error())
		return
	}
	h.publish(w, r.Context(), "cloudevents/"+ev.Source()+"/"+ev.ID(), req)
}

// request maps each push to its rules and publishes their builds,
// answering 202 with the first run (and the others' in more: a push of
// several refs, a repository several rules build), or 200 saying why none
// builds (no rule, not a branch or a tag). Each run's ids derive from the
// delivery, and, when it starts several, the ref and the image.
func (h *Webhooks) request(w http.ResponseWriter, r *http.Request, delivery string, pushes ...push) {
	if strings.HasSuffix(delivery, "/") {
		reply(w, http.StatusBadRequest, "the delivery id header is missing: it is what makes a redelivery start no second run")
		return
	}
	var accepted []WebhookAccepted
	var ignored []string
	for _, p := range pushes {
		reqs, why, err := h.buildRequests(p)
		if err != nil {
			reply(w, http.StatusBadRequest, err.Error())
			return
		}
		if why != "" {
			ignored = append(ignored, why)
			continue
		}
		for _, req := range reqs {
			id := delivery
			if len(pushes) > 1 {
				id += "/" + p.ref
			}
			if len(reqs) > 1 {
				id += "/" + repositoryOf(req.Target)
			}
			acc, err := h.publishEvent(r.Context(), id, events.BuildRequested, repositoryOf(req.Target), req)
			if err != nil {
				reply(w, publishStatus(err), err.Error())
				return
			}
			accepted = append(accepted, acc)
		}
	}
	if len(accepted) == 0 {
		reply(w, http.StatusOK, "ignored: "+cmp.Or(strings.Join(ignored, "; "), "a deleted ref builds nothing"))
		return
	}
	first := accepted[0]
	first.More = accepted[1:]
	service.WriteJSON(w, http.StatusAccepted, first)
}

// buildRequests are the builds a push asks for under its repository's
// rules, or why it asks for none; an error when a rule makes no image tag
// of it.
func (h *Webhooks) buildRequests(p push) ([]events.BuildRequest, string, error) {
	// (CutPrefix gives back the whole ref when it is not of that kind.)
	branch, tagName := "", ""
	if b, ok := strings.CutPrefix(p.ref, "refs/heads/"); ok {
		branch = b
	} else if tg, ok := strings.CutPrefix(p.ref, "refs/tags/"); ok {
		tagName = tg
	} else {
		return nil, fmt.Sprintf("%s is neither a branch nor a tag", p.ref), nil
	}
	sha := p.sha
	if len(sha) > 12 {
		sha = sha[:12]
	}
	var (
		reqs      []events.BuildRequest
		unchanged []string
	)
	for _, rule := range h.cfg.Repositories {
		if !strings.EqualFold(rule.Match, p.repo) {
			continue
		}
		if len(rule.Paths) > 0 && p.listed && !slices.ContainsFunc(p.changed, func(f string) bool { return oci.MatchesAny(rule.Paths, f) }) {
			unchanged = append(unchanged, rule.Image)
			continue
		}
		tag := cmp.Or(rule.Tag, tagName, branch)
		tag = strings.NewReplacer("{tag}", tagName, "{branch}", branch, "{sha}", sha).Replace(tag)
		tag = strings.ReplaceAll(tag, "/", "-") // a branch like feature/x becomes feature-x
		target := rule.Image + ":" + tag
		if _, err := name.NewTag(target); err != nil {
			return nil, "", fmt.Errorf("%s does not make an image tag: %v", target, err)
		}
		reqs = append(reqs, events.BuildRequest{
			Source: events.Source{Kind: events.SourceGit, URL: cmp.Or(rule.Git, p.cloneURL), Rev: p.sha, Ref: p.ref, Dir: rule.Dir},
			Target: target, PromoteTo: rule.PromoteTo,
		})
	}
	switch {
	case len(reqs) > 0:
		return reqs, "", nil
	case len(unchanged) > 0:
		return nil, fmt.Sprintf("the push changed no file the paths of %s name", strings.Join(unchanged, ", ")), nil
	}
	return nil, fmt.Sprintf("no rule for %s in the webhook config", p.repo), nil
}

// webhookNamespace derives run and event ids from delivery ids.
var webhookNamespace = uuid.MustParse("6a0f4b43-8d5a-4c9e-9d1e-3f2a1b7c5e90")

// publish stores build.requested with ids derived from the delivery, and
// answers 202 with the run.
func (h *Webhooks) publish(w http.ResponseWriter, ctx context.Context, delivery string, req events.BuildRequest) {
	acc, err := h.publishEvent(ctx, delivery, events.BuildRequested, repositoryOf(req.Target), req)
	if err != nil {
		reply(w, publishStatus(err), err.Error())
		return
	}
	service.WriteJSON(w, http.StatusAccepted, acc)
}

// publishEvent stores the event that starts a run, with ids derived from
// the delivery, so a redelivered webhook is the same event — JetStream
// keeps it once.
func (h *Webhooks) publishEvent(ctx context.Context, delivery string, n events.Name, subject string, data any) (WebhookAccepted, error) {
	runID := uuid.NewSHA1(webhookNamespace, []byte("run\x00"+delivery)).String()
	// The run's trace starts here: the event carries this span's context.
	ctx, span := h.bus.Tracer().Start(ctx, "webhook "+strings.SplitN(delivery, "/", 2)[0], trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("digestline.run_id", runID), attribute.String("oci.reference", subject)))
	defer span.End()
	ev, err := events.NewEvent(h.bus.Source(), n, runID, subject, data)
	if err != nil {
		return WebhookAccepted{}, err
	}
	ev.SetID(uuid.NewSHA1(webhookNamespace, []byte("event\x00"+delivery)).String())
	if err := h.bus.Publish(ctx, ev); err != nil {
		if errors.Is(err, events.ErrInvalid) {
			return WebhookAccepted{}, err
		}
		return WebhookAccepted{}, fmt.Errorf("the bus did not take the %s: %w", n, err)
	}
	acc := WebhookAccepted{RunID: runID, EventID: ev.ID()}
	if h.cfg.PageURL != "" {
		acc.RunURL = h.cfg.PageURL + "/runs/" + runID
	}
	return acc, nil
}

// publishStatus is the answer to an event the bus did not store: 400 for
// an invalid one, 503 when the bus failed.
func publishStatus(err error) int {
	if errors.Is(err, events.ErrInvalid) {
		return http.StatusBadRequest
	}
	return http.StatusServiceUnavailable
}

func repositoryOf(target string) string {
	if ref, err := name.ParseReference(target); err == nil {
		return ref.Context().Name()
	}
	return target
}

// readBody reads at most MaxWebhookBody bytes, answering 413 past that.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxWebhookBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		reply(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is over %d bytes", MaxWebhookBody))
		return nil, false
	case err != nil:
		reply(w, http.StatusBadRequest, "read the body: "+err.Error())
		return nil, false
	}
	return body, true
}

// signedBody reads a delivery signed with the webhook secret as GitHub
// and Bitbucket sign it, in header ("sha256=<hex HMAC-SHA256>"); false
// when it was answered already (refused).
func (h *Webhooks) signedBody(w http.ResponseWriter, r *http.Request, header string) ([]byte, bool) {
	body, ok := readBody(w, r)
	if !ok || !configured(w, h.cfg.Secret) {
		return nil, false
	}
	if !validSignature(h.cfg.Secret, r.Header.Get(header), body) {
		reply(w, http.StatusUnauthorized, "bad or missing "+header+" (sha256= and the HMAC-SHA256 of the body with the webhook secret)")
		return nil, false
	}
	return body, true
}

// nullCommit reports whether sha names no commit: git's null object id
// (40 zeros), which forges send for a deleted ref, or nothing.
func nullCommit(sha string) bool { return strings.Trim(sha, "0") == "" }

// validSignature checks GitHub's "sha256=<hex>" HMAC in constant time.
func validSignature(secret, header string, body []byte) bool {
	got, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	sig, err := hex.DecodeString(got)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hmac.Equal(sig, mac.Sum(nil))
}

// reply answers a webhook: an error as every endpoint fails, {"error"};
// a delivery that builds nothing with why, {"message"}.
func reply(w http.ResponseWriter, status int, msg string) {
	if status >= 400 {
		service.WriteError(w, status, msg)
		return
	}
	service.WriteJSON(w, status, map[string]string{"message": msg})
}
