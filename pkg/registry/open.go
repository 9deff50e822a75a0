package registry

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/registry/transport"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Open connects to repo's registry for pull (and push, when push is true).
// Without a credential it sends nothing: the first real request goes
// straight to the registry, and a 401 challenge is met when one comes
// (anonymous tokens, as Docker Hub hands out). With a credential it meets
// the registry's challenge now, so a credential the registry refuses fails
// here rather than at the first write. The connection is kept for authTTL
// per registry and scopes: opening the same repository again sends nothing.
func (c *Client) Open(ctx context.Context, repo name.Repository, push bool) (*Repo, error) {
	return c.open(ctx, repo, push)
}

// authTTL bounds how long an authenticated transport is reused: a credential
// changed in the docker config or the environment is picked up after it.
// (Tokens themselves are refreshed by the transport whenever one expires.)
const authTTL = 5 * time.Minute

type authEntry struct {
	rt   *transport.Auth
	made time.Time
}

// open connects to repo; extraPull names other repositories of the same
// registry the token must also be able to pull from (mount sources).
func (c *Client) open(ctx context.Context, repo name.Repository, push bool, extraPull ...string) (*Repo, error) {
	if c.insecure[repo.RegistryStr()] {
		reg, err := name.NewRegistry(repo.RegistryStr(), name.Insecure)
		if err != nil {
			return nil, &failure.Error{Class: failure.Schema, Err: err}
		}
		repo.Registry = reg
	}
	r := &Repo{name: repo, timeout: c.timeout}
	auth := c.auth
	if auth == nil {
		var err error
		if auth, err = c.keychain.Resolve(repo); err != nil {
			return nil, &failure.Error{Class: failure.Auth, Err: fmt.Errorf("resolve credentials for %s: %w", repo.RegistryStr(), err),
				Hint: "check ~/.docker/config.json and its credential helpers"}
		}
	}
	scope := repo.Scope(ggcr.PullScope)
	if push {
		scope = repo.Scope(ggcr.PushScope)
	}
	scopes := []string{scope}
	for _, from := range extraPull {
		scopes = append(scopes, repo.Registry.Repo(from).Scope(ggcr.PullScope))
	}
	key := repo.Registry.Scheme() + "://" + repo.RegistryStr() + " " + strings.Join(scopes, " ")
	c.authMu.Lock()
	e, ok := c.auths[key]
	c.authMu.Unlock()
	r.proven = auth != authn.Anonymous
	if ok && time.Since(e.made) < authTTL {
		r.client = &http.Client{Transport: e.rt}
		return r, nil
	}
	rt := transport.NewAuth(repo.Registry, auth, c.base, scopes)
	r.client = &http.Client{Transport: rt}
	if auth != authn.Anonymous {
		if err := rt.Prove(ctx, repo, c.timeout); err != nil {
			return nil, err
		}
	}
	c.authMu.Lock()
	c.auths[key] = authEntry{rt: rt, made: time.Now()}
	c.authMu.Unlock()
	return r, nil
}
