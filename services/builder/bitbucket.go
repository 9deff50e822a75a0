package builder

import (
	"encoding/json"
	"net/http"
)

// Bitbucket's webhooks: Bitbucket Cloud's repo:push and Bitbucket Data
// Center's repo:refs_changed. Both sign the body as GitHub does
// (X-Hub-Signature: sha256=<hex HMAC-SHA256>, with the webhook secret) and
// carry every ref a push changed, each of which builds.

// bitbucket takes Bitbucket Cloud's repo:push (X-Request-UUID names the
// delivery). Its payload names no clone URL: the repository is cloned
// from bitbucket.org, unless its rule names git.
func (h *Webhooks) bitbucket(w http.ResponseWriter, r *http.Request) {
	body, ok := h.bitbucketBody(w, r, "repo:push")
	if !ok {
		return
	}
	var ev struct {
		Repository struct {
			FullName string `json:"full_name"`
		} `json:"repository"`
		Push struct {
			Changes []struct {
				New *struct { // null for a deleted branch or tag
					Type   string `json:"type"`
					Name   string `json:"name"`
					Target struct {
						Hash    string `json:"hash"`
						Message string `json:"message"`
					} `json:"target"`
				} `json:"new"`
			} `json:"changes"`
		} `json:"push"`
	}
	if err := json.Unmarshal(body, &ev); err != nil || ev.Repository.FullName == "" || len(ev.Push.Changes) == 0 {
		reply(w, http.StatusBadRequest, "a Bitbucket repo:push event has repository.full_name and push.changes")
		return
	}
	clone := "https://bitbucket.org/" + ev.Repository.FullName + ".git"
	var pushes []push
	for _, c := range ev.Push.Changes {
		if c.New == nil {
			continue
		}
		ref := c.New.Name // a kind of ref git does not have is named as it is, and ignored
		switch c.New.Type {
		case "branch":
			ref = "refs/heads/" + ref
		case "tag":
			ref = "refs/tags/" + ref
		}
		pushes = append(pushes, push{repo: ev.Repository.FullName, cloneURL: clone, ref: ref, sha: c.New.Target.Hash, message: c.New.Target.Message})
	}
	h.request(w, r, "bitbucket/"+r.Header.Get("X-Request-UUID"), pushes...)
}

// bitbucketServer takes Bitbucket Data Center's (and Server's)
// repo:refs_changed (X-Request-Id names the delivery), and answers its
// "Test connection" (diagnostics:ping).
func (h *Webhooks) bitbucketServer(w http.ResponseWriter, r *http.Request) {
	body, ok := h.bitbucketBody(w, r, "repo:refs_changed")
	if !ok {
		return
	}
	var ev struct {
		Repository struct {
			Slug    string `json:"slug"`
			Project struct {
				Key string `json:"key"`
			} `json:"project"`
			Links struct {
				Clone []struct {
					Href string `json:"href"`
					Name string `json:"name"`
				} `json:"clone"`
			} `json:"links"`
		} `json:"repository"`
		Changes []struct {
			RefID  string `json:"refId"`
			ToHash string `json:"toHash"`
			Type   string `json:"type"` // ADD, UPDATE, DELETE
		} `json:"changes"`
	}
	if err := json.Unmarshal(body, &ev); err != nil || ev.Repository.Slug == "" || ev.Repository.Project.Key == "" || len(ev.Changes) == 0 {
		reply(w, http.StatusBadRequest, "a Bitbucket repo:refs_changed event has repository.slug, repository.project.key and changes")
		return
	}
	repo, clone := ev.Repository.Project.Key+"/"+ev.Repository.Slug, ""
	for _, l := range ev.Repository.Links.Clone {
		if l.Name == "http" {
			clone = l.Href
		}
	}
	var pushes []push
	for _, c := range ev.Changes {
		if c.Type != "DELETE" && !nullCommit(c.ToHash) {
			pushes = append(pushes, push{repo: repo, cloneURL: clone, ref: c.RefID, sha: c.ToHash})
		}
	}
	h.request(w, r, "bitbucket-server/"+r.Header.Get("X-Request-Id"), pushes...)
}

// bitbucketBody reads a Bitbucket delivery of the event named want, signed
// with the webhook secret; false when it was answered already (refused,
// a ping, or another event, which builds nothing). A ping is refused as
// any delivery when the secret is wrong, so that "Test connection" says
// so.
func (h *Webhooks) bitbucketBody(w http.ResponseWriter, r *http.Request, want string) ([]byte, bool) {
	body, ok := h.signedBody(w, r, "X-Hub-Signature")
	if !ok {
		return nil, false
	}
	switch got := r.Header.Get("X-Event-Key"); {
	case got == "diagnostics:ping":
		reply(w, http.StatusOK, "pong")
		return nil, false
	case got != want:
		reply(w, http.StatusOK, "ignored: only "+want+" events start builds, not "+got)
		return nil, false
	}
	return body, true
}
