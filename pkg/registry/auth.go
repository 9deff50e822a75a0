package registry

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/digestline/digestline/pkg/failure"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
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
	rt   *authTransport
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
	scope := repo.Scope(transport.PullScope)
	if push {
		scope = repo.Scope(transport.PushScope)
	}
	scopes := []string{scope}
	for _, from := range extraPull {
		scopes = append(scopes, repo.Registry.Repo(from).Scope(transport.PullScope))
	}
	key := repo.Registry.Scheme() + "://" + repo.RegistryStr() + " " + strings.Join(scopes, " ")
	c.authMu.Lock()
	e, ok := c.auths[key]
	c.authMu.Unlock()
	if ok && time.Since(e.made) < authTTL {
		r.client = &http.Client{Transport: e.rt}
		return r, nil
	}
	rt := &authTransport{reg: repo.Registry, auth: auth, base: c.base, scopes: scopes}
	r.client = &http.Client{Transport: rt}
	if auth != authn.Anonymous {
		if err := rt.prove(ctx, r); err != nil {
			return nil, err
		}
	}
	c.authMu.Lock()
	c.auths[key] = authEntry{rt: rt, made: time.Now()}
	c.authMu.Unlock()
	return r, nil
}

// authTransport authenticates requests to one registry the way the
// registry asks, without asking it first. Requests go out as they are
// until one is answered 401 with a challenge; the challenge is then met
// (a token fetched for the scopes, or basic credentials attached) and the
// request sent again. An anonymous push to an open registry makes no
// request for auth at all (no GET /v2/ ping), and one to a registry with
// tokens makes the token round trip only.
type authTransport struct {
	reg    name.Registry
	auth   authn.Authenticator
	base   http.RoundTripper
	scopes []string

	mu     sync.Mutex
	authed http.RoundTripper // set once a challenge was met
}

func (t *authTransport) current() http.RoundTripper {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.authed
}

func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if rt := t.current(); rt != nil {
		return rt.RoundTrip(req)
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		return resp, err
	}
	challenge, err := challengeOf(req.Context(), t.reg, resp)
	if err != nil {
		return resp, nil // a challenge we cannot read: the 401 is the answer
	}
	replay := req.Clone(req.Context())
	if req.Body != nil && req.Body != http.NoBody {
		if req.GetBody == nil {
			// A streamed body cannot be sent twice. It is never the first
			// request to a registry, but should it be, the 401 is the answer
			// and the next request goes out authenticated.
			_, _ = t.meet(req.Context(), challenge)
			return resp, nil
		}
		if replay.Body, err = req.GetBody(); err != nil {
			return resp, nil
		}
	}
	drain(resp)
	rt, err := t.meet(req.Context(), challenge)
	if err != nil {
		return nil, err
	}
	return rt.RoundTrip(replay)
}

// meet answers the challenge once for every request of this transport:
// a Bearer challenge by a token for the scopes, any other by attaching the
// credential to each request.
func (t *authTransport) meet(ctx context.Context, challenge *transport.Challenge) (http.RoundTripper, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.authed != nil { // met meanwhile by another request
		return t.authed, nil
	}
	var tok transport.Token
	if strings.EqualFold(challenge.Scheme, "bearer") {
		got, err := transport.Exchange(ctx, t.reg, t.auth, t.base, t.scopes, challenge)
		if err != nil {
			return nil, err
		}
		tok = *got
		if tok.Token == "" { // some token services name it access_token
			tok.Token = tok.AccessToken
		}
	}
	rt, err := transport.FromToken(t.reg, t.auth, t.base, challenge, &tok)
	if err != nil {
		return nil, err
	}
	t.authed = rt
	return rt, nil
}

// prove meets the registry's challenge now, so a credential the registry
// refuses fails at once. The challenge comes from GET /v2/; a token
// exchange proves a credential by itself, and a basic credential is proven
// by sending the ping again with it. A registry that answers the ping
// without a challenge is open: there is nothing to prove.
func (t *authTransport) prove(ctx context.Context, r *Repo) error {
	ping := func(rt http.RoundTripper) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url("/v2/"), nil)
		if err != nil {
			return nil, &failure.Error{Class: failure.Schema, Err: err, Hint: "the registry address is malformed"}
		}
		resp, err := rt.RoundTrip(req)
		if err != nil {
			return nil, r.classifyTransport(ctx, err)
		}
		return resp, nil
	}
	resp, err := ping(t.base)
	if err != nil {
		return err
	}
	defer drain(resp)
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	if resp.StatusCode != http.StatusUnauthorized {
		return classifyResponse(resp, r.name)
	}
	challenge, err := challengeOf(ctx, t.reg, resp)
	if err != nil {
		return classifyResponse(resp, r.name)
	}
	rt, err := t.meet(ctx, challenge)
	if err != nil {
		return r.classifyTransport(ctx, err)
	}
	if strings.EqualFold(challenge.Scheme, "bearer") {
		return nil
	}
	again, err := ping(rt)
	if err != nil {
		return err
	}
	defer drain(again)
	if again.StatusCode != http.StatusOK {
		return classifyResponse(again, r.name)
	}
	return nil
}

// challengeOf reads the WWW-Authenticate challenge of a 401 with
// go-containerregistry's own parser: transport.Ping reads the answer to a
// GET /v2/, and is handed this answer instead of asking the registry.
func challengeOf(ctx context.Context, reg name.Registry, resp *http.Response) (*transport.Challenge, error) {
	answer := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: resp.StatusCode, Header: resp.Header, Body: http.NoBody, Request: resp.Request}, nil
	})
	return transport.Ping(ctx, reg, answer)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
