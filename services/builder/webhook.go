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
	"slices"
	"strings"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/pkg/tags"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// MaxWebhookBody bounds a webhook's body at GitHub's own limit (25 MB): a
// push is a few kilobytes, but one of many commits (GitHub lists up to
// 2,048, each with its files) is megabytes, and is a build like any other.
const MaxWebhookBody = 25 << 20

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
	// message is the pushed commit's message, when the payload carries it:
	// one that says [skip ci] builds nothing.
	message string
}

// skipMarkers are what a commit message says to build nothing, as GitHub
// Actions and GitLab CI read them (case aside), and digestline's own.
var skipMarkers = []string{"[skip ci]", "[ci skip]", "[no ci]", "[skip digestline]"}

// skipped is the marker message carries, or "".
func skipped(message string) string {
	lower := strings.ToLower(message)
	for _, m := range skipMarkers {
		if strings.Contains(lower, m) {
			return m
		}
	}
	return ""
}

// pushedCommit is a commit of a push as GitHub, Gitea and GitLab list it.
type pushedCommit struct {
	ID       string   `json:"id"`
	Message  string   `json:"message"`
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
		TotalCommits *int         `json:"total_commits"`
		HeadCommit   pushedCommit `json:"head_commit"`
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
	// A tag's after is the tag object's id when the tag is annotated; its
	// head_commit, which GitHub sends for every tag since 2021, is the
	// commit it tags: the run names that (a sender without it, after).
	sha := ev.After
	if strings.HasPrefix(ev.Ref, "refs/tags/") && plumbing.IsHash(ev.HeadCommit.ID) {
		sha = ev.HeadCommit.ID
	}
	h.request(w, r, "github/"+r.Header.Get("X-GitHub-Delivery"), push{repo: ev.Repository.FullName, cloneURL: ev.Repository.CloneURL,
		ref: ev.Ref, sha: sha, changed: changed, listed: listed, message: ev.HeadCommit.Message})
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
	message := ""
	for _, c := range ev.Commits {
		if c.ID == ev.CheckoutSHA {
			message = c.Message
		}
	}
	h.request(w, r, "gitlab/"+delivery, push{repo: ev.Project.Path, cloneURL: ev.Project.HTTPURL, ref: ev.Ref, sha: ev.CheckoutSHA,
		changed: changed, listed: listed, message: message})
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
		if err == nil {
			err = noCredentialIn(req.Source.Origin)
		}
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
	var record []pushStarted
	for _, p := range pushes {
		reqs, why, err := h.buildRequests(p)
		if err != nil {
			reply(w, http.StatusBadRequest, err.Error())
			return
		}
		if why != "" {
			ignored = append(ignored, why)
			record = append(record, pushStarted{commit: p.sha, why: why})
			continue
		}
		started := pushStarted{commit: p.sha}
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
			started.runs = append(started.runs, acc.RunID)
		}
		record = append(record, started)
	}
	if err := h.recordPushes(r.Context(), record); err != nil {
		reply(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if len(accepted) == 0 {
		reply(w, http.StatusOK, "ignored: "+cmp.Or(strings.Join(ignored, "; "), "a deleted ref builds nothing"))
		return
	}
	first := accepted[0]
	first.More = accepted[1:]
	service.WriteJSON(w, http.StatusAccepted, first)
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
