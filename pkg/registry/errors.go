package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Class is a failure class. Classes are errors themselves, so callers write
// errors.Is(err, registry.ClassAuth).
type Class string

// The failure classes.
const (
	ClassAuth      Class = "auth"
	ClassTransport Class = "transport"
	ClassRateLimit Class = "rate-limit"
	ClassSchema    Class = "schema"
	ClassIntegrity Class = "integrity"
	ClassNotFound  Class = "not-found"
	ClassConflict  Class = "conflict"
)

func (c Class) Error() string { return string(c) }

// Error is a classified registry failure.
type Error struct {
	Class Class
	// Stage is the push or verify stage that failed, when known.
	Stage string
	// Status is the HTTP status, 0 when no response came back.
	Status int
	// Codes are the registry's error codes (e.g. DENIED, MANIFEST_INVALID).
	Codes []string
	// Hint tells a person what to do next.
	Hint string
	// RetryAfter is the delay the registry asked for, if any.
	RetryAfter time.Duration
	// Drift is set on a conflict caused by a tag pointing elsewhere.
	Drift *Drift
	Err   error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Stage != "" {
		b.WriteString(e.Stage + ": ")
	}
	fmt.Fprintf(&b, "%s error: %v", e.Class, e.Err)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches the error's Class.
func (e *Error) Is(target error) bool {
	c, ok := target.(Class)
	return ok && c == e.Class
}

// Temporary reports whether retrying may succeed: transport failures (other
// than cancellation), rate limiting and server errors.
func (e *Error) Temporary() bool {
	if errors.Is(e.Err, context.Canceled) || errors.Is(e.Err, context.DeadlineExceeded) {
		return false
	}
	return e.Class.Transient() || e.Status >= 500
}

// Transient reports whether failures of this class pass: transport and
// rate limiting.
func (c Class) Transient() bool { return c == ClassTransport || c == ClassRateLimit }

// AsError returns err's *Error, classifying it as transport when it is not one.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Class: ClassTransport, Err: err, Hint: "check that the registry is reachable from here"}
}

// classifyResponse turns a failed response into an *Error. The body is read
// (bounded) for the registry's error codes; the caller closes it.
func classifyResponse(resp *http.Response, repo name.Repository) *Error {
	e := &Error{Status: resp.StatusCode, Err: transport.CheckError(resp)}
	var terr *transport.Error
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
	switch s := resp.StatusCode; {
	case s == http.StatusUnauthorized:
		e.Class, e.Hint = ClassAuth, fmt.Sprintf("the registry %s rejected the credentials: check DIGESTLINE_REGISTRY_USERNAME/DIGESTLINE_REGISTRY_PASSWORD or run 'docker login %s'", reg, reg)
	case s == http.StatusForbidden:
		e.Class, e.Hint = ClassAuth, fmt.Sprintf("the credential lacks push/pull scope for repository %s: check its permissions on %s", path, reg)
	case s == http.StatusTooManyRequests:
		e.Class, e.Hint = ClassRateLimit, fmt.Sprintf("the registry %s is throttling requests: wait, lower the concurrency, or authenticate for a higher limit", reg)
		e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"))
	case s == http.StatusNotFound:
		e.Class, e.Hint = ClassNotFound, fmt.Sprintf("%s/%s has no such manifest or blob: check the reference and that it was pushed", reg, path)
	case s == http.StatusConflict || s == http.StatusPreconditionFailed:
		e.Class, e.Hint = ClassConflict, "the registry state changed underneath this request: re-read it and decide (or pass the expected digest)"
	case s >= 500:
		e.Class, e.Hint = ClassTransport, fmt.Sprintf("the registry %s failed (%d): it is retried; if it persists, check the registry's health", reg, s)
	case has("DIGEST_INVALID") || has("SIZE_INVALID"):
		e.Class, e.Hint = ClassIntegrity, "the content does not match its digest or size: rebuild, and check nothing between here and the registry alters blobs"
	case has("BLOB_UNKNOWN") || has("MANIFEST_BLOB_UNKNOWN"):
		e.Class, e.Hint = ClassSchema, "the manifest references a blob the registry does not hold: push the blobs first (digestline does this unless they were deleted mid-push)"
	default:
		e.Class, e.Hint = ClassSchema, fmt.Sprintf("the registry %s refused the request (%d): check it supports this manifest's media type (OCI or Docker v2.2)", reg, s)
	}
	return e
}

// classifyTransport classifies an error that came back instead of a response.
func classifyTransport(err error, repo name.Repository) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var terr *transport.Error
	if errors.As(err, &terr) { // from the auth handshake (token endpoint)
		e = &Error{Status: terr.StatusCode, Err: err}
		for _, d := range terr.Errors {
			e.Codes = append(e.Codes, string(d.Code))
		}
		switch {
		case terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden:
			e.Class, e.Hint = ClassAuth, fmt.Sprintf("the registry %s rejected the credentials or scope for %s: check the credential and its permissions", repo.RegistryStr(), repo.RepositoryStr())
		case terr.StatusCode == http.StatusTooManyRequests:
			e.Class, e.Hint = ClassRateLimit, "the registry's token service is throttling requests: wait and retry"
		default:
			e.Class, e.Hint = ClassTransport, "the registry's auth handshake failed: check the registry is healthy"
		}
		return e
	}
	hint := fmt.Sprintf("could not reach the registry %s: check the address, that it is running, and the network", repo.RegistryStr())
	return &Error{Class: ClassTransport, Err: err, Hint: hint}
}

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
