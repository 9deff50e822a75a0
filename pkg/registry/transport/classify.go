package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/digestline/digestline/pkg/failure"
	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Classify turns a failed response from repo's registry into a
// *failure.Error: its class, the registry's error codes, and a hint naming
// what to do. The body is read
// (bounded) for the registry's error codes; the caller closes it.
func Classify(resp *http.Response, repo name.Repository) *failure.Error {
	e := &failure.Error{Status: resp.StatusCode, Err: ggcr.CheckError(resp)}
	var terr *ggcr.Error
	if errors.As(e.Err, &terr) {
		for _, d := range terr.Errors {
			e.Codes = append(e.Codes, string(d.Code))
		}
	}
	if e.Err == nil { // CheckError accepts 2xx; the caller did not
		e.Err = fmt.Errorf("unexpected status %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	has := func(code string) bool {
		for _, c := range e.Codes {
			if c == code {
				return true
			}
		}
		return false
	}
	reg, path := repo.RegistryStr(), repo.RepositoryStr()
	req := resp.Request
	startsUpload := req != nil && req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/blobs/uploads/")
	putsTag := req != nil && req.Method == http.MethodPut && strings.Contains(req.URL.Path, "/manifests/") && !strings.Contains(req.URL.Path, "/manifests/sha256:")
	guarded := req != nil && req.Header.Get("If-Match") != ""
	switch s := resp.StatusCode; {
	case has("NAME_UNKNOWN") && startsUpload:
		e.Class, e.Hint = failure.NotFound, fmt.Sprintf("the repository %s does not exist on %s, and this registry does not create repositories on push (ECR does not): create it first (e.g. aws ecr create-repository --repository-name %s), then push again", path, reg, path)
	case putsTag && has("TAG_INVALID") && s < 500:
		e.Class, e.Hint = failure.Conflict, fmt.Sprintf("%s refuses to move an existing tag of %s (tags are immutable there: ECR's image tag mutability, Harbor's immutability rules): push under a new tag", reg, path)
	case s == http.StatusPreconditionFailed && !guarded:
		e.Class, e.Hint = failure.Auth, fmt.Sprintf("%s's policy refused the request (Harbor answers 412 to a tag its immutability rules protect, and to an image its signature or vulnerability policy does not allow): push under a new tag, or sign or fix the image as the project's policy requires", reg)
	case s == http.StatusUnsupportedMediaType:
		e.Class, e.Hint = failure.Schema, fmt.Sprintf("%s does not accept this media type or artifact type (Quay, for one, allows only configured artifact types): allow it in the registry, or push the artifact elsewhere", reg)
	case s == http.StatusUnauthorized:
		e.Class, e.Hint = failure.Auth, fmt.Sprintf("the registry %s rejected the credentials: check DIGESTLINE_REGISTRY_USERNAME/DIGESTLINE_REGISTRY_PASSWORD or run 'docker login %s'", reg, reg)
	case s == http.StatusForbidden:
		e.Class, e.Hint = failure.Auth, fmt.Sprintf("the credential lacks push/pull scope for repository %s: check its permissions on %s", path, reg)
	case s == http.StatusTooManyRequests:
		e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"))
		wait := "it is retried with backoff (the registry named no delay)"
		if e.RetryAfter > 0 {
			wait = fmt.Sprintf("it is retried after the %s the registry asked for", e.RetryAfter)
		}
		e.Class, e.Hint = failure.RateLimit, fmt.Sprintf("the registry %s is throttling requests: %s; lower the concurrency, or authenticate for a higher limit", reg, wait)
	case s == http.StatusNotFound:
		e.Class, e.Hint = failure.NotFound, fmt.Sprintf("%s/%s has no such manifest or blob: check the reference and that it was pushed", reg, path)
	case s == http.StatusConflict || s == http.StatusPreconditionFailed:
		e.Class, e.Hint = failure.Conflict, "the registry state changed underneath this request: re-read it and decide"
	case s >= 500:
		e.Class, e.Hint = failure.Transport, fmt.Sprintf("the registry %s failed (%d): it is retried; if it persists, check the registry's health", reg, s)
	case has("DIGEST_INVALID") || has("SIZE_INVALID"):
		e.Class, e.Hint = failure.Integrity, "the content does not match its digest or size: rebuild, and check nothing between here and the registry alters blobs"
	case has("BLOB_UNKNOWN") || has("MANIFEST_BLOB_UNKNOWN"):
		e.Class, e.Hint = failure.Schema, "the manifest references a blob the registry does not hold: push the blobs first (digestline does this unless they were deleted mid-push)"
	default:
		e.Class, e.Hint = failure.Schema, fmt.Sprintf("the registry %s refused the request (%d): check it supports this manifest's media type (OCI or Docker v2.2)", reg, s)
	}
	return e
}

// ClassifyError classifies an error that came back from repo's registry
// instead of a response: the auth handshake's refusal, the registry's silence past the
// client's timeout, the caller's deadline or cancellation, or no
// connection at all — each naming the registry.
func ClassifyError(ctx context.Context, err error, repo name.Repository, timeout time.Duration) *failure.Error {
	var e *failure.Error
	if errors.As(err, &e) {
		return e
	}
	reg, path := repo.RegistryStr(), repo.RepositoryStr()
	var terr *ggcr.Error
	if errors.As(err, &terr) { // from the auth handshake (token endpoint)
		e = &failure.Error{Status: terr.StatusCode, Err: err}
		for _, d := range terr.Errors {
			e.Codes = append(e.Codes, string(d.Code))
		}
		switch {
		case terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden:
			e.Class, e.Hint = failure.Auth, fmt.Sprintf("the registry %s rejected the credentials or scope for %s: check the credential and its permissions", reg, path)
		case terr.StatusCode == http.StatusTooManyRequests:
			e.Class, e.Hint = failure.RateLimit, "the registry's token service is throttling requests: wait and retry"
		default:
			e.Class, e.Hint = failure.Transport, "the registry's auth handshake failed: check the registry is healthy"
		}
		return e
	}
	if ctx.Err() != nil { // the caller's deadline or cancellation, not the registry's doing
		cause := context.Cause(ctx)
		hint := fmt.Sprintf("the work was stopped while waiting for the registry %s", reg)
		var d *failure.DeadlineError
		if errors.As(cause, &d) {
			hint = fmt.Sprintf("the registry %s had not answered when %s: %s", reg, d, d.Hint())
		}
		return &failure.Error{Class: failure.Transport, Err: fmt.Errorf("%w (%w)", err, cause), Hint: hint}
	}
	if e := lasting(err, reg); e != nil {
		return e
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &failure.Error{Class: failure.Transport, Err: err,
			Hint: fmt.Sprintf("the registry %s sent nothing for %s (DIGESTLINE_REGISTRY_TIMEOUT): it is retried; if it persists, check the registry's health and the network to it", reg, timeout)}
	}
	return &failure.Error{Class: failure.Transport, Err: err,
		Hint: fmt.Sprintf("could not reach the registry %s: check the address, that it is running, and the network", reg)}
}

// lasting classifies a connection to reg that trying again will not
// mend, so it is not retried (Exhausted): a certificate this machine does
// not trust, a registry that answers HTTPS in plain HTTP; nil for any
// other failure. (A name that does not resolve is retried: in a compose
// network, a registry's container that restarts has none meanwhile.)
func lasting(err error, reg string) *failure.Error {
	var (
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &verify), errors.As(err, &unknown), errors.As(err, &hostname), errors.As(err, &invalid):
		return &failure.Error{Class: failure.Transport, Err: err, Exhausted: true, Hint: fmt.Sprintf(
			"this machine does not trust the TLS certificate of the registry %s: give it the registry's CA (SSL_CERT_FILE or SSL_CERT_DIR, or the system's trust store) or fix the certificate's names; trying again will not help", reg)}
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"): // net/http's words; it has no error type
		return &failure.Error{Class: failure.Transport, Err: err, Exhausted: true, Hint: fmt.Sprintf(
			"the registry %s speaks plain HTTP: if it is meant to (a registry inside your network), add it to DIGESTLINE_INSECURE_REGISTRIES; else serve it over TLS", reg)}
	}
	return nil
}

// parseRetryAfter reads a Retry-After header: seconds, or an HTTP date.
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// Drain discards what is left of a body so the connection can be reused.
func Drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
}
