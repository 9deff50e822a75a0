package transport

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/digestline/digestline/pkg/failure"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Auth authenticates requests to one registry the way the
// registry asks, without asking it first. Requests go out as they are
// until one is answered 401 with a challenge; the challenge is then met
// (a token fetched for the scopes, or basic credentials attached) and the
// request sent again. An anonymous push to an open registry makes no
// request for auth at all (no GET /v2/ ping), and one to a registry with
// tokens makes the token round trip only.
type Auth struct {
	reg    name.Registry
	auth   authn.Authenticator
	base   http.RoundTripper
	scopes []string

	mu     sync.Mutex
	authed http.RoundTripper // set once a challenge was met
}

func (t *Auth) current() http.RoundTripper {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.authed
}

func (t *Auth) RoundTrip(req *http.Request) (*http.Response, error) {
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
	Drain(resp)
	rt, err := t.meet(req.Context(), challenge)
	if err != nil {
		return nil, err
	}
	return rt.RoundTrip(replay)
}

// NewAuth returns the transport to reg over base, proving auth for scopes
// when a challenge asks.
func NewAuth(reg name.Registry, auth authn.Authenticator, base http.RoundTripper, scopes []string) *Auth {
	return &Auth{reg: reg, auth: auth, base: base, scopes: scopes}
}

// meet answers the challenge once for every request of this transport:
// a Bearer challenge by a token for the scopes, any other by attaching the
// credential to each request.
func (t *Auth) meet(ctx context.Context, challenge *ggcr.Challenge) (http.RoundTripper, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.authed != nil { // met meanwhile by another request
		return t.authed, nil
	}
	var tok ggcr.Token
	if strings.EqualFold(challenge.Scheme, "bearer") {
		got, err := ggcr.Exchange(ctx, t.reg, t.auth, t.base, t.scopes, challenge)
		if err != nil {
			return nil, err
		}
		tok = *got
		if tok.Token == "" { // some token services name it access_token
			tok.Token = tok.AccessToken
		}
	}
	rt, err := ggcr.FromToken(t.reg, t.auth, t.base, challenge, &tok)
	if err != nil {
		return nil, err
	}
	t.authed = rt
	return rt, nil
}

// Prove meets the registry's challenge now, so a credential the registry
// refuses fails at once. The challenge comes from GET /v2/; a token
// exchange proves a credential by itself, and a basic credential is proven
// by sending the ping again with it. A registry that answers the ping
// without a challenge is open: there is nothing to prove.
func (t *Auth) Prove(ctx context.Context, repo name.Repository, timeout time.Duration) error {
	ping := func(rt http.RoundTripper) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, repo.Registry.Scheme()+"://"+repo.RegistryStr()+"/v2/", nil)
		if err != nil {
			return nil, &failure.Error{Class: failure.Schema, Err: err, Hint: "the registry address is malformed"}
		}
		resp, err := rt.RoundTrip(req)
		if err != nil {
			return nil, ClassifyError(ctx, err, repo, timeout)
		}
		return resp, nil
	}
	resp, err := ping(t.base)
	if err != nil {
		return err
	}
	defer Drain(resp)
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	if resp.StatusCode != http.StatusUnauthorized {
		return Classify(resp, repo)
	}
	challenge, err := challengeOf(ctx, t.reg, resp)
	if err != nil {
		return Classify(resp, repo)
	}
	rt, err := t.meet(ctx, challenge)
	if err != nil {
		return ClassifyError(ctx, err, repo, timeout)
	}
	if strings.EqualFold(challenge.Scheme, "bearer") {
		return nil
	}
	again, err := ping(rt)
	if err != nil {
		return err
	}
	defer Drain(again)
	if again.StatusCode != http.StatusOK {
		return Classify(again, repo)
	}
	return nil
}

// challengeOf reads the WWW-Authenticate challenge of a 401 with
// go-containerregistry's own parser: ggcr.Ping reads the answer to a
// GET /v2/, and is handed this answer instead of asking the registry.
func challengeOf(ctx context.Context, reg name.Registry, resp *http.Response) (*ggcr.Challenge, error) {
	answer := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: resp.StatusCode, Header: resp.Header, Body: http.NoBody, Request: resp.Request}, nil
	})
	return ggcr.Ping(ctx, reg, answer)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
