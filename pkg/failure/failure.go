package failure

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// Class is a failure class. Classes are errors themselves, so callers write
// errors.Is(err, failure.Auth).
type Class string

// The failure classes: the registry's (push, verify, promote) and the
// builder's input.
const (
	Auth      Class = "auth"       // credentials refused, or missing
	Transport Class = "transport"  // no answer, a broken connection, a server error, a deadline
	RateLimit Class = "rate-limit" // throttled
	Schema    Class = "schema"     // a request or answer that does not follow the protocol
	Integrity Class = "integrity"  // bytes that do not match their digest or size
	NotFound  Class = "not-found"  // what was named does not exist
	Conflict  Class = "conflict"   // the state changed underneath (tag drift)
	Input     Class = "input"      // the request or its source is unusable as given
)

func (c Class) Error() string { return string(c) }

// Transient reports whether failures of this class pass by themselves:
// transport and rate limiting.
func (c Class) Transient() bool { return c == Transport || c == RateLimit }

// Error is a classified failure: what went wrong, where, and what a person
// should do next. It is the one error type every service fails with; the
// event contract's failure is made from it (events.NewFailure).
type Error struct {
	Class Class
	// Stage is the step that failed: a push stage, "build", "verify".
	Stage string
	// Path locates the failing descriptor, e.g. "manifest → layer 2".
	Path string
	// Status is the HTTP status, 0 when no response came back.
	Status int
	// Codes are the registry's error codes (e.g. DENIED, MANIFEST_INVALID).
	Codes []string
	// Hint tells a person what to do next.
	Hint string
	// RetryAfter is the delay the other side asked for, if any.
	RetryAfter time.Duration
	// Mismatches lists every descriptor found wrong, for an integrity failure.
	Mismatches []Mismatch
	// Drift is set on a conflict caused by a tag pointing elsewhere.
	Drift *Drift
	// Exhausted says trying again would not help, so a failure of a
	// transient class is not Temporary: retries of it already ran out
	// where it happened (a push stage retries by itself), or no retry
	// mends it (a registry's certificate this machine does not trust).
	Exhausted bool
	Err       error
}

// New returns an *Error of class with a hint.
func New(class Class, err error, hint string) *Error {
	return &Error{Class: class, Err: err, Hint: hint}
}

// Errorf returns an *Error of class with a hint and a formatted cause.
func Errorf(class Class, hint, format string, a ...any) *Error {
	return New(class, fmt.Errorf(format, a...), hint)
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Stage != "" {
		b.WriteString(e.Stage + ": ")
	}
	fmt.Fprintf(&b, "%s error", e.Class)
	if e.Path != "" {
		b.WriteString(" at " + e.Path)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches the error's Class.
func (e *Error) Is(target error) bool {
	c, ok := target.(Class)
	return ok && c == e.Class
}

// Temporary is the one rule of what is worth trying again: transport
// failures (a request's own timeout among them), rate limiting and server
// errors — unless retries already ran out, or the work was cancelled or
// ran past its bound (a *DeadlineError: trying again would only meet it
// again).
func (e *Error) Temporary() bool {
	var d *DeadlineError
	if e.Exhausted || errors.Is(e.Err, context.Canceled) || errors.As(e.Err, &d) {
		return false
	}
	return e.Class.Transient() || e.Status >= 500
}

// As returns err's *Error. An error nobody classified is a transport
// failure (something outside did not answer as it should), with a hint to
// look further; a deadline names itself in the hint.
func As(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	hint := "it is retried; if it persists, check the service's logs"
	var d *DeadlineError
	if errors.As(err, &d) {
		hint = d.Error() + ": " + d.Hint()
	}
	return &Error{Class: Transport, Err: err, Hint: hint}
}

// Mismatch is one descriptor found wrong.
type Mismatch struct {
	Path     string `json:"path"`
	Digest   string `json:"digest"`
	Class    string `json:"class"`
	Expected string `json:"expected,omitempty"`
	Found    string `json:"found,omitempty"`
}

// Drift is a tag found pointing where it should not.
type Drift struct {
	Tag      string
	Expected digest.Digest // what the caller expected it to point at ("" for if-absent: nothing)
	Found    digest.Digest
}

// DeadlineError is the cause of a context that ran out of time: which
// bound it was, so the failure it leads to can name it.
type DeadlineError struct {
	// What ran out of time, e.g. "the pusher's handling of build.completed".
	What string
	// Timeout is the bound, and Setting where a person changes it.
	Timeout time.Duration
	Setting string
}

func (d *DeadlineError) Error() string {
	return fmt.Sprintf("%s did not finish within %s", d.What, d.Timeout)
}

// Hint says what to do about it.
func (d *DeadlineError) Hint() string {
	if d.Setting == "" {
		return "something outside did not answer in time: check what it waits for"
	}
	return "something outside did not answer in time: check what it waits for, or raise " + d.Setting
}

// Unwrap lets errors.Is(err, context.DeadlineExceeded) hold.
func (d *DeadlineError) Unwrap() error { return context.DeadlineExceeded }

// CancelAfter returns ctx cancelled once d's timeout passes, with d as its
// cause. It is a cancellation, not a context deadline, on purpose: clients
// such as NATS's give each request a short timeout of their own only when
// the context has no deadline, and a request nobody answers must still
// fail in seconds, not when the whole bound runs out.
func CancelAfter(ctx context.Context, d *DeadlineError) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	t := time.AfterFunc(d.Timeout, func() { cancel(d) })
	return ctx, func() { t.Stop(); cancel(context.Canceled) }
}

// Report is an Error as the event contract carries it: the failure part of
// build.failed, push.failed, verify.failed and of a failed push stage.
type Report struct {
	Class string `json:"class" jsonschema:"minLength=1"`
	Stage string `json:"stage,omitempty"`
	// Path locates the failing descriptor, e.g. "manifest → layer 2".
	Path       string     `json:"path,omitempty"`
	Message    string     `json:"message"`
	Hint       string     `json:"hint,omitempty"`
	Mismatches []Mismatch `json:"mismatches,omitempty"`
	// RetryAfterMS is the delay the other side asked for, if it asked.
	RetryAfterMS int64 `json:"retryAfterMs,omitempty"`
}

// Report is the error as an event carries it.
func (e *Error) Report() Report {
	msg := "unknown failure"
	if e.Err != nil {
		msg = e.Err.Error()
	}
	return Report{Class: string(e.Class), Stage: e.Stage, Path: e.Path, Message: msg, Hint: e.Hint,
		Mismatches: e.Mismatches, RetryAfterMS: e.RetryAfter.Milliseconds()}
}

// String is the report as one line for people: class, where, what, and
// the hint on a line of its own.
func (r Report) String() string {
	var b strings.Builder
	b.WriteString(r.Class + " error")
	if r.Stage != "" {
		b.WriteString(" at " + r.Stage)
	}
	if r.Path != "" {
		b.WriteString(" (" + r.Path + ")")
	}
	b.WriteString(": " + r.Message)
	if r.Hint != "" {
		b.WriteString("\nhint: " + r.Hint)
	}
	return b.String()
}
