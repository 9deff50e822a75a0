package registrytest

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
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
	// NoCreateOnPush answers an upload to a repository that does not
	// exist with NAME_UNKNOWN (ECR creates no repository on push).
	NoCreateOnPush Quirk = "no-create-on-push"
	// ImmutableTags refuses to move a tag that exists with 400 TAG_INVALID
	// (ECR's immutable tag mutability; Harbor's rules, on newer versions).
	ImmutableTags Quirk = "immutable-tags"
	// PolicyRefusal answers every tag write with 412 DENIED (Harbor's
	// immutability rules and its signature and vulnerability policies).
	PolicyRefusal Quirk = "policy-refusal"
	// RefusesArtifacts answers a manifest with an artifactType with 415
	// (Quay accepts only the artifact types it is configured for).
	RefusesArtifacts Quirk = "refuses-artifacts"
	// NoChunkedUploads refuses a PATCH with Content-Range: 400
	// BLOB_UPLOAD_INVALID (Google Artifact Registry and others take a blob
	// in one streamed upload only).
	NoChunkedUploads Quirk = "no-chunked-uploads"
	// MountOpensSession answers a cross-repository mount with 202 and an
	// upload session, as the spec lets a registry that cannot mount do.
	MountOpensSession Quirk = "mount-opens-session"
	// Throttles answers the first blob upload with 429 and no Retry-After.
	Throttles Quirk = "throttles"
	// DigestForFallbackTag reads a manifest reference sha256-<hex> as the
	// digest sha256:<hex>, so the referrers fallback tag of a manifest is
	// that manifest (GitLab's registry; oras-project/oras-go#1396).
	DigestForFallbackTag Quirk = "digest-for-fallback-tag"
	// DeletesTagsOnly refuses to delete a manifest by digest (405
	// UNSUPPORTED) and deletes tags: registries that untag, and leave the
	// manifest to their own garbage collection.
	DeletesTagsOnly Quirk = "deletes-tags-only"
)

// TagDeletesOnly wraps a registry's handler so that it deletes tags only
// (the DeletesTagsOnly quirk), for a registry served in the test's own
// process.
func TagDeletesOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !refusedDigestDelete(w, r) {
			next.ServeHTTP(w, r)
		}
	})
}

// refusedDigestDelete answers a DELETE of a manifest by digest as a
// registry that deletes tags only does, and reports whether it did.
func refusedDigestDelete(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodDelete || !strings.Contains(r.URL.Path, "/manifests/sha256:") {
		return false
	}
	distributionError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "The operation is unsupported.")
	return true
}

// distributionError writes the distribution spec's error body.
func distributionError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`, code, message)
}

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
	rp.ErrorLog = log.New(io.Discard, "", 0) // a client that gave up on a request is no news
	noReferrersAPI := has[HTMLReferrers] || has[RedirectReferrers] || has[NotIndexReferrers]
	rp.ModifyResponse = func(resp *http.Response) error {
		if noReferrersAPI {
			resp.Header.Del("OCI-Subject") // a registry without the API does not acknowledge subjects
		}
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
	var throttled atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Path
		tagWrite := r.Method == http.MethodPut && strings.Contains(path, "/manifests/") && !strings.Contains(path, "/manifests/sha256:")
		switch {
		case has[NoCreateOnPush] && r.Method == http.MethodPost && strings.HasSuffix(path, "/blobs/uploads/"):
			repo := strings.TrimSuffix(strings.TrimPrefix(path, "/v2/"), "/blobs/uploads/")
			distributionError(w, http.StatusNotFound, "NAME_UNKNOWN", "The repository with name '"+repo+"' does not exist in the registry")
			return
		case has[ImmutableTags] && tagWrite && exists(target, path):
			distributionError(w, http.StatusBadRequest, "TAG_INVALID", "The image tag already exists and cannot be overwritten because the repository is immutable.")
			return
		case has[PolicyRefusal] && tagWrite:
			distributionError(w, http.StatusPreconditionFailed, "DENIED", "The image is not signed by a trusted key")
			return
		case has[RefusesArtifacts] && r.Method == http.MethodPut && strings.Contains(path, "/manifests/"):
			body, _ := io.ReadAll(io.LimitReader(r.Body, 4<<20))
			if strings.Contains(string(body), `"artifactType"`) {
				distributionError(w, http.StatusUnsupportedMediaType, "MANIFEST_INVALID", "artifact type not allowed")
				return
			}
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		case has[NoChunkedUploads] && r.Method == http.MethodPatch && r.Header.Get("Content-Range") != "":
			distributionError(w, http.StatusBadRequest, "BLOB_UPLOAD_INVALID", "chunked uploads are not supported")
			return
		case has[MountOpensSession] && r.Method == http.MethodPost && r.URL.Query().Get("mount") != "":
			r.URL.RawQuery = "" // a plain upload: the registry opens a session
		case has[Throttles] && CarriesBlob(r) && throttled.CompareAndSwap(false, true):
			distributionError(w, http.StatusTooManyRequests, "TOOMANYREQUESTS", "slow down")
			return
		case has[DeletesTagsOnly] && refusedDigestDelete(w, r):
			return
		}
		if has[DigestForFallbackTag] {
			if before, ref, ok := strings.Cut(path, "/manifests/sha256-"); ok {
				r.URL.Path = before + "/manifests/sha256:" + ref
			}
		}
		if strings.Contains(path, "/referrers/") && answerReferrers(has, w, r) {
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// answerReferrers answers the referrers API as a registry without one
// does, by its quirk, and reports whether it did.
func answerReferrers(has map[Quirk]bool, w http.ResponseWriter, r *http.Request) bool {
	switch {
	case has[HTMLReferrers]:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte("<!DOCTYPE html><html><body>Sign in</body></html>"))
	case has[RedirectReferrers]:
		http.Redirect(w, r, "http://127.0.0.1:1/login", http.StatusSeeOther)
	case has[NotIndexReferrers]:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"errors":[]}`))
	default:
		return false
	}
	return true
}

// CarriesBlob reports whether r uploads a whole blob, or the end of one,
// with its digest: the PUT that closes a session, or a single POST.
func CarriesBlob(r *http.Request) bool {
	return (r.Method == http.MethodPut || r.Method == http.MethodPost) &&
		strings.Contains(r.URL.Path, "/blobs/uploads/") && r.URL.Query().Get("digest") != ""
}

// exists reports whether the registry at target has the manifest at path.
func exists(target, path string) bool {
	resp, err := http.Head("http://" + target + path)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
