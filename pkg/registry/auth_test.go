package registry_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
)

// tokenRegistry is a registry behind the bearer token flow real registries
// use: /v2/ answers 401 with a Bearer challenge naming a token service, the
// token service trades basic credentials for a token carrying the requested
// scope, and the registry checks the token on every request.
type tokenRegistry struct {
	host        string
	user, pass  string
	tokens      atomic.Int64
	sawScope    atomic.Value
	pushAllowed bool
	anonPull    atomic.Bool // the token service hands anonymous callers pull tokens, as Docker Hub does
}

func newTokenRegistry(t *testing.T, user, pass string, pushAllowed bool) *tokenRegistry {
	t.Helper()
	tr := &tokenRegistry{user: user, pass: pass, pushAllowed: pushAllowed}
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	mux := http.NewServeMux()
	var srv *httptest.Server
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		anonymous := !ok && tr.anonPull.Load()
		if !anonymous && (!ok || u != tr.user || p != tr.pass) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		scope := r.URL.Query().Get("scope")
		tr.sawScope.Store(scope)
		tr.tokens.Add(1)
		if !tr.pushAllowed || anonymous {
			scope = strings.ReplaceAll(scope, "push,", "")
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"token": base64.StdEncoding.EncodeToString([]byte(scope))})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		scope, _ := base64.StdEncoding.DecodeString(token)
		write := r.Method != http.MethodGet && r.Method != http.MethodHead
		if !ok || (r.URL.Path != "/v2/" && !strings.Contains(string(scope), "pull")) || (write && !strings.Contains(string(scope), "push")) {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="test"`, srv.URL))
			status := http.StatusUnauthorized
			if ok {
				status = http.StatusForbidden
			}
			w.WriteHeader(status)
			return
		}
		reg.ServeHTTP(w, r)
	})
	srv = httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	tr.host = strings.TrimPrefix(srv.URL, "http://")
	return tr
}

func TestBearerTokenFlow(t *testing.T) {
	t.Parallel()
	g, l := buildImage(t, "bearer")
	ctx := context.Background()

	tr := newTokenRegistry(t, "ci", "s3cret", true)
	ref, _ := name.ParseReference(tr.host + "/team/app:1")
	rec := &recorder{}
	if _, err := newClient(registry.WithAuth(&authn.Basic{Username: "ci", Password: "s3cret"})).Push(ctx, ref, g, l, rec.observe); err != nil {
		t.Fatalf("push with a token: %v", err)
	}
	if got, want := rec.final()[events.StageAuth].Line, "[STAGE] auth OK "+tr.host+" credentials accepted"; got != want {
		t.Errorf("auth line %q, want %q", got, want)
	}
	if scope, _ := tr.sawScope.Load().(string); scope != "repository:team/app:push,pull" {
		t.Errorf("token asked for scope %q", scope)
	}
	// Warm, from a fresh client: the token round trip (the challenge, the
	// token) and the HEAD of the tag, nothing more.
	res, err := newClient(registry.WithAuth(&authn.Basic{Username: "ci", Password: "s3cret"})).Push(ctx, ref, g, l, nil)
	if err != nil || res.Requests != 3 {
		t.Fatalf("warm push with a token: %v, %d requests, want 3", err, res.Requests)
	}

	wrong := newTokenRegistry(t, "ci", "s3cret", true)
	ref, _ = name.ParseReference(wrong.host + "/team/app:1")
	_, err = newClient(registry.WithAuth(&authn.Basic{Username: "ci", Password: "nope"})).Push(ctx, ref, g, l, nil)
	var rerr *failure.Error
	if !errors.As(err, &rerr) || rerr.Class != failure.Auth || rerr.Stage != events.StageAuth {
		t.Fatalf("wrong password: %v, want an auth failure at the auth stage", err)
	}

	readOnly := newTokenRegistry(t, "ci", "s3cret", false)
	ref, _ = name.ParseReference(readOnly.host + "/team/app:1")
	_, err = newClient(registry.WithAuth(&authn.Basic{Username: "ci", Password: "s3cret"})).Push(ctx, ref, g, l, nil)
	if !errors.As(err, &rerr) || rerr.Class != failure.Auth || !strings.Contains(rerr.Hint, "push") {
		t.Fatalf("a token without push scope: %v, want auth with a hint about the push scope", err)
	}
}

// TestAnAnonymousClientMeetsTheChallengeWhenItComes: without a credential
// nothing is asked before the first real request; a registry that wants a
// token even for pulls (Docker Hub) answers it with a challenge, the client
// fetches an anonymous token and sends the request again. Writing with that
// token fails as auth, at the first write, with a hint about the scope.
func TestAnAnonymousClientMeetsTheChallengeWhenItComes(t *testing.T) {
	t.Parallel()
	tr := newTokenRegistry(t, "ci", "s3cret", true)
	g, l := buildImage(t, "anonymous pull")
	ctx := context.Background()
	ref := mustRef(t, tr.host+"/library/app:1")
	if _, err := newClient(registry.WithAuth(&authn.Basic{Username: "ci", Password: "s3cret"})).Push(ctx, ref, g, l, nil); err != nil {
		t.Fatal(err)
	}
	tr.anonPull.Store(true)

	anonymous := newClient(registry.WithAuth(authn.Anonymous))
	res, err := anonymous.Push(ctx, ref, g, l, nil)
	if err != nil || res.Requests != 3 {
		t.Fatalf("warm anonymous push: %v in %d requests, want 3 (the HEAD refused with a challenge, the token, the HEAD again)", err, res.Requests)
	}
	repo, err := anonymous.Open(ctx, ref.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, desc, err := repo.GetManifest(ctx, g.Root.Digest.String()); err != nil || desc.Digest != g.Root.Digest {
		t.Fatalf("anonymous pull: %v", err)
	}

	other, otherL := buildImage(t, "anonymous push")
	_, err = anonymous.Push(ctx, mustRef(t, tr.host+"/library/app:2"), other, otherL, nil)
	var e *failure.Error
	if !errors.As(err, &e) || e.Class != failure.Auth || e.Stage != events.StageUpload || !strings.Contains(e.Hint, "push") {
		t.Fatalf("anonymous push of new content = %v, want auth at upload with a hint about push scope", err)
	}
}

func TestCredentialsFromDockerConfig(t *testing.T) {
	// Not parallel: it points DOCKER_CONFIG at its own directory.
	tr := newTokenRegistry(t, "robot", "from-config", true)
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("robot:from-config"))
	cfg := fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, tr.host, auth)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
	g, l := buildImage(t, "docker config")
	ref, _ := name.ParseReference(tr.host + "/team/app:1")
	// The default keychain: docker config.json and its credential helpers.
	if _, err := registry.New(registry.WithRetries(0, 0)).Push(context.Background(), ref, g, l, nil); err != nil {
		t.Fatalf("push with credentials from config.json: %v", err)
	}
	if tr.tokens.Load() == 0 {
		t.Fatal("no token was requested")
	}
}
