package registrytest

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
)

// Quirk is a way a registry in the field departs from what the
// distribution spec leads a client to expect. docs/registries.md says
// which registries do what, with links.
type Quirk string

// The quirks a Proxy can put in front of a registry.
const (
	// NoDigestHeader drops Docker-Content-Digest from manifest answers
	// (ECR, Artifactory and Red Hat registries answer HEAD without it).
	NoDigestHeader Quirk = "no-digest-header"
	// WrongDigestHeader sends a Docker-Content-Digest that is not the
	// manifest's: a broken or malicious proxy.
	WrongDigestHeader Quirk = "wrong-digest-header"
	// HTMLReferrers answers the referrers API with 200 and a web page
	// (a registry without the API behind a UI's catch-all route).
	HTMLReferrers Quirk = "html-referrers"
	// RedirectReferrers answers the referrers API with a 303 to another
	// host (GHCR, Docker Hub send unknown API paths to their web sites).
	RedirectReferrers Quirk = "redirect-referrers"
	// NotIndexReferrers answers the referrers API with 200 JSON that is
	// not an image index.
	NotIndexReferrers Quirk = "not-index-referrers"
)

// Proxy serves the registry at target (host:port, plain HTTP) behind
// quirks, and returns the proxy's host:port. It stops at the test's
// cleanup.
func Proxy(t testing.TB, target string, quirks ...Quirk) string {
	t.Helper()
	has := map[Quirk]bool{}
	for _, q := range quirks {
		has[q] = true
	}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	rp.ModifyResponse = func(resp *http.Response) error {
		if strings.Contains(resp.Request.URL.Path, "/manifests/") {
			switch {
			case has[NoDigestHeader]:
				resp.Header.Del("Docker-Content-Digest")
			case has[WrongDigestHeader]:
				resp.Header.Set("Docker-Content-Digest", "sha256:"+strings.Repeat("0", 64))
			}
		}
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/referrers/") {
			switch {
			case has[HTMLReferrers]:
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				_, _ = w.Write([]byte("<!DOCTYPE html><html><body>Sign in</body></html>"))
				return
			case has[RedirectReferrers]:
				http.Redirect(w, r, "http://127.0.0.1:1/login", http.StatusSeeOther)
				return
			case has[NotIndexReferrers]:
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"errors":[]}`))
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}
