package builder

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/service"
)

// Registries' notifications of pushes, each sender's as it documents
// it (docs/admission.md has each one's configuration). Every endpoint
// takes the registry token (DIGESTLINE_REGISTRY_WEBHOOK_TOKEN) as a
// bearer token, as the Authorization header's whole value (Harbor's auth
// header), or in the URL's token parameter (Quay and Docker Hub send no
// header of their own choosing). GitHub's package events come to
// /webhooks/github, signed with the webhook secret.
func (h *Webhooks) registerRegistries(mux *http.ServeMux) {
	mux.HandleFunc("POST /webhooks/registry/distribution", h.registryHook(events.SenderDistribution, distributionPushes))
	mux.HandleFunc("POST /webhooks/registry/harbor", h.registryHook(events.SenderHarbor, harborPushes))
	mux.HandleFunc("POST /webhooks/registry/quay", h.registryHook(events.SenderQuay, quayPushes))
	mux.HandleFunc("POST /webhooks/registry/dockerhub", h.registryHook(events.SenderDockerHub, dockerHubPushes))
}

// noRegistryToken is the answer to every registry notification while no
// token is configured.
const noRegistryToken = "no registry webhook token is configured, so every notification is refused: start the builder (or digestline dev) with DIGESTLINE_REGISTRY_WEBHOOK_TOKEN set (docs/admission.md)"

// registryHook authenticates a registry's notification, reads the images
// it says were pushed with parse, and admits them.
func (h *Webhooks) registryHook(sender string, parse func(*http.Request, []byte) ([]pushed, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, ok := readBody(w, r)
		if !ok {
			return
		}
		if h.cfg.RegistryToken == "" {
			reply(w, http.StatusUnauthorized, noRegistryToken)
			return
		}
		auth := r.Header.Get("Authorization")
		if !service.SameSecret(strings.TrimPrefix(auth, "Bearer "), h.cfg.RegistryToken) && !service.SameSecret(r.URL.Query().Get("token"), h.cfg.RegistryToken) {
			reply(w, http.StatusUnauthorized, "bad or missing registry token: send it as Authorization: Bearer <token>, as the Authorization header's value, or as ?token=<token>")
			return
		}
		images, err := parse(r, body)
		if err != nil {
			reply(w, http.StatusBadRequest, fmt.Sprintf("not a %s push notification: %v", sender, err))
			return
		}
		h.admit(w, r, sender, images)
	}
}

// distributionPushes reads the CNCF distribution registry's envelope of
// events: each push of a manifest, with its digest, repository and tag.
func distributionPushes(_ *http.Request, body []byte) ([]pushed, error) {
	var env struct {
		Events []struct {
			ID        string    `json:"id"`
			Timestamp time.Time `json:"timestamp"`
			Action    string    `json:"action"`
			Target    struct {
				MediaType  string `json:"mediaType"`
				Digest     string `json:"digest"`
				Repository string `json:"repository"`
				URL        string `json:"url"`
				Tag        string `json:"tag"`
			} `json:"target"`
			Request struct {
				Host string `json:"host"`
			} `json:"request"`
		} `json:"events"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, err
	}
	var out []pushed
	for _, e := range env.Events {
		if e.Action != "push" || e.Target.Repository == "" {
			continue
		}
		if e.ID == "" || e.Target.Digest == "" {
			return nil, fmt.Errorf("a push event has an id and a target digest")
		}
		host := e.Request.Host
		if u, err := url.Parse(e.Target.URL); err == nil && u.Host != "" {
			host = u.Host
		}
		out = append(out, pushed{delivery: e.ID, host: host, repo: e.Target.Repository, tag: e.Target.Tag, digest: e.Target.Digest,
			mediaType: e.Target.MediaType, at: e.Timestamp})
	}
	return out, nil
}

// harborPushes reads Harbor's PUSH_ARTIFACT event: the artifacts pushed,
// each with its digest, tag and resource URL.
func harborPushes(_ *http.Request, body []byte) ([]pushed, error) {
	var ev struct {
		Type      string `json:"type"`
		OccurAt   int64  `json:"occur_at"`
		EventData struct {
			Resources []struct {
				Digest      string `json:"digest"`
				Tag         string `json:"tag"`
				ResourceURL string `json:"resource_url"`
			} `json:"resources"`
			Repository struct {
				RepoFullName string `json:"repo_full_name"`
			} `json:"repository"`
		} `json:"event_data"`
	}
	if err := json.Unmarshal(unwrapCloudEvent(body), &ev); err != nil {
		return nil, err
	}
	if ev.Type != "PUSH_ARTIFACT" {
		return nil, nil // another event: nothing to admit
	}
	repo := ev.EventData.Repository.RepoFullName
	if repo == "" {
		return nil, fmt.Errorf("event_data.repository.repo_full_name is missing")
	}
	var out []pushed
	for _, res := range ev.EventData.Resources {
		host, _ := splitResource(res.ResourceURL)
		out = append(out, pushed{delivery: fmt.Sprintf("%s@%s:%s/%d", repo, res.Digest, res.Tag, ev.OccurAt), host: host, repo: repo,
			tag: res.Tag, digest: res.Digest, at: time.Unix(ev.OccurAt, 0)})
	}
	return out, nil
}

// quayPushes reads Quay's repository push notification: the repository
// and the tags it updated (no digest: each tag's is read from the registry).
func quayPushes(r *http.Request, body []byte) ([]pushed, error) {
	var ev struct {
		Repository  string   `json:"repository"`
		DockerURL   string   `json:"docker_url"`
		UpdatedTags []string `json:"updated_tags"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return nil, err
	}
	if ev.Repository == "" || ev.DockerURL == "" {
		return nil, fmt.Errorf("repository and docker_url are missing")
	}
	host, _ := splitResource(ev.DockerURL)
	at := time.Now()
	var out []pushed
	for _, tag := range ev.UpdatedTags {
		out = append(out, pushed{host: host, repo: ev.Repository, tag: tag, at: at})
	}
	return out, nil
}

// dockerHubPushes reads Docker Hub's webhook: the repository and the tag
// pushed (no digest: the tag's is read from the registry), and the
// callback URL, which is the delivery's own.
func dockerHubPushes(_ *http.Request, body []byte) ([]pushed, error) {
	var ev struct {
		CallbackURL string `json:"callback_url"`
		PushData    struct {
			PushedAt json.Number `json:"pushed_at"`
			Tag      string      `json:"tag"`
		} `json:"push_data"`
		Repository struct {
			RepoName string `json:"repo_name"`
		} `json:"repository"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return nil, err
	}
	if ev.Repository.RepoName == "" || ev.CallbackURL == "" {
		return nil, fmt.Errorf("repository.repo_name and callback_url are missing")
	}
	at := time.Now()
	if secs, err := strconv.ParseFloat(ev.PushData.PushedAt.String(), 64); err == nil && secs > 0 {
		at = time.Unix(int64(secs), 0)
	}
	repo := ev.Repository.RepoName
	if !strings.Contains(repo, "/") {
		repo = "library/" + repo
	}
	return []pushed{{delivery: ev.CallbackURL, host: "index.docker.io", repo: repo, tag: ev.PushData.Tag, at: at}}, nil
}

// gitHubPackage reads GitHub's registry_package (or package) published
// event of a container: its tag and digest, and where it is
// (ghcr.io/owner/name).
func gitHubPackage(delivery string, body []byte) ([]pushed, error) {
	type version struct {
		Version           string `json:"version"`
		PackageURL        string `json:"package_url"`
		ContainerMetadata struct {
			Tag struct {
				Name   string `json:"name"`
				Digest string `json:"digest"`
			} `json:"tag"`
		} `json:"container_metadata"`
		CreatedAt time.Time `json:"created_at"`
	}
	type pkg struct {
		Namespace      string  `json:"namespace"`
		Name           string  `json:"name"`
		PackageType    string  `json:"package_type"`
		PackageVersion version `json:"package_version"`
	}
	var ev struct {
		Action          string `json:"action"`
		RegistryPackage *pkg   `json:"registry_package"`
		Package         *pkg   `json:"package"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return nil, err
	}
	p := ev.RegistryPackage
	if p == nil {
		p = ev.Package
	}
	if p == nil || ev.Action != "published" || !strings.EqualFold(p.PackageType, "container") {
		return nil, nil // not a container published
	}
	v := p.PackageVersion
	d := v.ContainerMetadata.Tag.Digest
	if d == "" && strings.HasPrefix(v.Version, "sha256:") {
		d = v.Version
	}
	host, repo := splitResource(v.PackageURL)
	if repo == "" {
		host, repo = "ghcr.io", strings.ToLower(p.Namespace+"/"+p.Name)
	}
	if d == "" {
		return nil, fmt.Errorf("the package version names no digest")
	}
	return []pushed{{delivery: delivery, host: host, repo: repo, tag: v.ContainerMetadata.Tag.Name, digest: d, at: v.CreatedAt}}, nil
}

// splitResource splits a registry's name of an image —
// [scheme://]host/repository[:tag][@digest] — into its host and
// repository.
func splitResource(s string) (host, repo string) {
	if _, rest, ok := strings.Cut(s, "://"); ok {
		s = rest
	}
	s, _, _ = strings.Cut(s, "@")
	host, repo, _ = strings.Cut(s, "/")
	if i := strings.LastIndexByte(repo, ':'); i >= 0 {
		repo = repo[:i]
	}
	return host, repo
}

// unwrapCloudEvent is the data of a CloudEvent in structured mode (Harbor
// sends its events so when a policy's payload format is CloudEvents), or
// body itself.
func unwrapCloudEvent(body []byte) []byte {
	var ce struct {
		SpecVersion string          `json:"specversion"`
		Data        json.RawMessage `json:"data"`
		Type        string          `json:"type"`
		Time        time.Time       `json:"time"`
	}
	if json.Unmarshal(body, &ce) != nil || ce.SpecVersion == "" || len(ce.Data) == 0 {
		return body
	}
	// Harbor's CloudEvents type is harbor.artifact.pushed; its data is
	// the default format's event_data, and its time the occur_at.
	if ce.Type == "harbor.artifact.pushed" {
		wrapped, _ := json.Marshal(map[string]any{"type": "PUSH_ARTIFACT", "event_data": ce.Data, "occur_at": max(ce.Time.Unix(), 0)})
		return wrapped
	}
	return ce.Data
}
