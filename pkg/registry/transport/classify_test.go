package transport_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/registry/transport"
	"github.com/google/go-containerregistry/pkg/name"
)

// answer is a registry's answer to method path, with the registry's
// error code (when not "") in its body.
func answer(method, path string, status int, code string, header http.Header) *http.Response {
	req, _ := http.NewRequest(method, "https://registry.example"+path, nil)
	body := ""
	if code != "" {
		body = fmt.Sprintf(`{"errors":[{"code":%q,"message":"as the registry says"}]}`, code)
	}
	if header == nil {
		header = http.Header{}
	}
	return &http.Response{StatusCode: status, Header: header, Body: io.NopCloser(strings.NewReader(body)), Request: req}
}

// TestClassify is the classification of every registry answer a push or
// a pull meets, with the hint each gives: the codes and statuses of the
// distribution spec, and the quirks docs/registries.md lists.
func TestClassify(t *testing.T) {
	t.Parallel()
	repo, _ := name.NewRepository("registry.example/team/app")
	const manifests, upload = "/v2/team/app/manifests/", "/v2/team/app/blobs/uploads/"
	guarded := answer(http.MethodPut, manifests+"v1", http.StatusPreconditionFailed, "", nil)
	guarded.Request.Header.Set("If-Match", `"sha256:abc"`)
	for name, tc := range map[string]struct {
		resp  *http.Response
		class failure.Class
		hint  string
	}{
		"401":                   {answer(http.MethodGet, manifests+"v1", 401, "UNAUTHORIZED", nil), failure.Auth, "docker login"},
		"403":                   {answer(http.MethodGet, manifests+"v1", 403, "DENIED", nil), failure.Auth, "scope"},
		"404":                   {answer(http.MethodGet, manifests+"v1", 404, "MANIFEST_UNKNOWN", nil), failure.NotFound, "check the reference"},
		"ECR: no repository":    {answer(http.MethodPost, upload, 404, "NAME_UNKNOWN", nil), failure.NotFound, "create it first"},
		"ECR: immutable tag":    {answer(http.MethodPut, manifests+"v1", 400, "TAG_INVALID", nil), failure.Conflict, "immutable"},
		"Harbor: policy":        {answer(http.MethodPut, manifests+"v1", 412, "", nil), failure.Auth, "policy"},
		"a guarded tag moved":   {guarded, failure.Conflict, "re-read"},
		"Quay: media type":      {answer(http.MethodPut, manifests+"v1", 415, "", nil), failure.Schema, "media type"},
		"429 with Retry-After":  {answer(http.MethodGet, manifests+"v1", 429, "TOOMANYREQUESTS", http.Header{"Retry-After": {"7"}}), failure.RateLimit, "after the 7s"},
		"429 without a delay":   {answer(http.MethodGet, manifests+"v1", 429, "", nil), failure.RateLimit, "backoff"},
		"409":                   {answer(http.MethodPut, manifests+"v1", 409, "", nil), failure.Conflict, "re-read"},
		"503":                   {answer(http.MethodGet, manifests+"v1", 503, "", nil), failure.Transport, "it is retried"},
		"digest invalid":        {answer(http.MethodPut, upload+"x", 400, "DIGEST_INVALID", nil), failure.Integrity, "does not match"},
		"manifest blob unknown": {answer(http.MethodPut, manifests+"v1", 400, "MANIFEST_BLOB_UNKNOWN", nil), failure.Schema, "push the blobs first"},
		"anything else refused": {answer(http.MethodPut, manifests+"v1", 400, "MANIFEST_INVALID", nil), failure.Schema, "media type"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := transport.Classify(tc.resp, repo)
			if e.Class != tc.class || !strings.Contains(e.Hint, tc.hint) {
				t.Errorf("class %s, hint %q; want %s and a hint with %q", e.Class, e.Hint, tc.class, tc.hint)
			}
			if e.Status != tc.resp.StatusCode {
				t.Errorf("status %d, want %d", e.Status, tc.resp.StatusCode)
			}
		})
	}
	if e := transport.Classify(answer(http.MethodGet, manifests+"v1", 429, "", http.Header{"Retry-After": {"7"}}), repo); e.RetryAfter != 7*time.Second {
		t.Errorf("Retry-After 7: %s, want 7s", e.RetryAfter)
	}
}

// timeoutError is a network error that timed out, as a silent registry's is.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

var _ net.Error = timeoutError{}

// TestClassifyError is the classification of a request that got no
// answer: the registry silent, unreachable, or the caller's own bound.
func TestClassifyError(t *testing.T) {
	t.Parallel()
	repo, _ := name.NewRepository("registry.example/team/app")
	live := context.Background()
	stopped, cancel := context.WithCancelCause(context.Background())
	cancel(&failure.DeadlineError{What: "the pusher's handling", Timeout: time.Minute, Setting: "DIGESTLINE_HANDLER_TIMEOUT"})
	own := failure.Errorf(failure.Integrity, "rebuild", "blob changed")
	for name, tc := range map[string]struct {
		ctx   context.Context
		err   error
		class failure.Class
		hint  string
	}{
		"silent registry":   {live, fmt.Errorf("read: %w", timeoutError{}), failure.Transport, "sent nothing for 1m0s"},
		"unreachable":       {live, errors.New("connection refused"), failure.Transport, "could not reach"},
		"untrusted":         {live, &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, failure.Transport, "does not trust the TLS certificate"},
		"our bound ran out": {stopped, errors.New("context canceled"), failure.Transport, "DIGESTLINE_HANDLER_TIMEOUT"},
		"already a failure": {live, own, failure.Integrity, "rebuild"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := transport.ClassifyError(tc.ctx, tc.err, repo, time.Minute)
			if retried := name == "silent registry" || name == "unreachable"; e.Temporary() != retried { // "untrusted" does not mend
				t.Errorf("retried: %v, want %v", e.Temporary(), retried)
			}
			if e.Class != tc.class || !strings.Contains(e.Hint, tc.hint) {
				t.Errorf("class %s, hint %q; want %s and a hint with %q", e.Class, e.Hint, tc.class, tc.hint)
			}
		})
	}
}
