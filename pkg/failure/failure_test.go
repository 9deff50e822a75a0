package failure_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/failure"
)

// TestTemporary is the one rule of what is worth trying again: transient
// classes and server errors, unless the tries are spent, the work was
// cancelled or a bound of ours ran out.
func TestTemporary(t *testing.T) {
	t.Parallel()
	deadline := &failure.DeadlineError{What: "the push", Timeout: time.Minute, Setting: "DIGESTLINE_HANDLER_TIMEOUT"}
	for name, tc := range map[string]struct {
		err  *failure.Error
		want bool
	}{
		"transport":                 {&failure.Error{Class: failure.Transport, Err: errors.New("reset")}, true},
		"rate limit":                {&failure.Error{Class: failure.RateLimit, Err: errors.New("429")}, true},
		"a server error of a class": {&failure.Error{Class: failure.Schema, Status: 503, Err: errors.New("503")}, true},
		"auth":                      {&failure.Error{Class: failure.Auth, Status: 401, Err: errors.New("401")}, false},
		"schema":                    {&failure.Error{Class: failure.Schema, Status: 400, Err: errors.New("400")}, false},
		"integrity":                 {&failure.Error{Class: failure.Integrity, Err: errors.New("digest")}, false},
		"not found":                 {&failure.Error{Class: failure.NotFound, Status: 404, Err: errors.New("404")}, false},
		"conflict":                  {&failure.Error{Class: failure.Conflict, Err: errors.New("drift")}, false},
		"input":                     {&failure.Error{Class: failure.Input, Err: errors.New("bad")}, false},
		"tries spent":               {&failure.Error{Class: failure.Transport, Exhausted: true, Err: errors.New("reset")}, false},
		"cancelled":                 {&failure.Error{Class: failure.Transport, Err: fmt.Errorf("get: %w", context.Canceled)}, false},
		"our own bound ran out":     {&failure.Error{Class: failure.Transport, Err: fmt.Errorf("get: %w", deadline)}, false},
	} {
		t.Run(name, func(t *testing.T) {
			if got := tc.err.Temporary(); got != tc.want {
				t.Errorf("Temporary() = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestAsClassifiesWhatNobodyDid: an error nobody classified is a
// transport failure with a hint; a classified one is itself; a deadline
// names itself and where it is set.
func TestAsClassifiesWhatNobodyDid(t *testing.T) {
	t.Parallel()
	own := failure.Errorf(failure.NotFound, "push it first", "no such tag %s", "v1")
	if got := failure.As(fmt.Errorf("wrapped: %w", own)); got != own {
		t.Errorf("As of a wrapped *Error = %v, want the error itself", got)
	}
	plain := failure.As(errors.New("connection refused"))
	if plain.Class != failure.Transport || plain.Hint == "" {
		t.Errorf("As of a plain error = %+v, want class transport with a hint", plain)
	}
	d := failure.As(&failure.DeadlineError{What: "the verify", Timeout: time.Minute, Setting: "DIGESTLINE_HANDLER_TIMEOUT"})
	if d.Class != failure.Transport || !strings.Contains(d.Hint, "DIGESTLINE_HANDLER_TIMEOUT") {
		t.Errorf("As of a deadline = %+v, want its setting named in the hint", d)
	}
	if !errors.Is(own, failure.NotFound) || errors.Is(own, failure.Transport) {
		t.Error("a failure is its class (errors.Is) and no other")
	}
}
