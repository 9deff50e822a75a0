package builder

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/digestline/digestline/pkg/service"
)

// azureDevOps takes Azure DevOps's git.push service hook (a "Web Hooks"
// subscription). Azure DevOps signs nothing: the subscription sends the
// webhook secret as its basic authentication password (any user name) or
// as a bearer token in its HTTP headers. The event's id names the
// delivery; every ref the push updated builds, a deleted one (no new
// commit) nothing.
func (h *Webhooks) azureDevOps(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok || !configured(w, h.cfg.Secret) {
		return
	}
	given := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if _, password, basic := r.BasicAuth(); basic {
		given = password
	}
	if !service.SameSecret(given, h.cfg.Secret) {
		reply(w, http.StatusUnauthorized, "the webhook secret is missing or wrong: set it as the subscription's basic authentication password, or send Authorization: Bearer with it")
		return
	}
	var ev struct {
		ID        string `json:"id"`
		EventType string `json:"eventType"`
		Resource  struct {
			RefUpdates []struct {
				Name        string `json:"name"`
				NewObjectID string `json:"newObjectId"`
			} `json:"refUpdates"`
			Commits []struct {
				CommitID string `json:"commitId"`
				Comment  string `json:"comment"`
			} `json:"commits"`
			Repository struct {
				Name      string `json:"name"`
				RemoteURL string `json:"remoteUrl"`
				Project   struct {
					Name string `json:"name"`
				} `json:"project"`
			} `json:"repository"`
		} `json:"resource"`
	}
	if err := json.Unmarshal(body, &ev); err != nil || ev.EventType == "" {
		reply(w, http.StatusBadRequest, "not an Azure DevOps service hook event (it has eventType, id and resource)")
		return
	}
	if ev.EventType != "git.push" {
		reply(w, http.StatusOK, "ignored: only git.push events start builds, not "+ev.EventType)
		return
	}
	repo := ev.Resource.Repository
	if repo.Name == "" || repo.Project.Name == "" || len(ev.Resource.RefUpdates) == 0 {
		reply(w, http.StatusBadRequest, "an Azure DevOps git.push event has resource.repository (its name and project) and resource.refUpdates")
		return
	}
	var pushes []push
	for _, u := range ev.Resource.RefUpdates {
		if nullCommit(u.NewObjectID) {
			continue
		}
		p := push{repo: repo.Project.Name + "/" + repo.Name, cloneURL: repo.RemoteURL, ref: u.Name, sha: u.NewObjectID}
		for _, c := range ev.Resource.Commits {
			if c.CommitID == u.NewObjectID {
				p.message = c.Comment
			}
		}
		pushes = append(pushes, p)
	}
	h.request(w, r, "azure-devops/"+ev.ID, pushes...)
}
