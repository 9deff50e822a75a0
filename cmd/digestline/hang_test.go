package main

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/registry/registrytest"
)

// TestPushToARegistryThatNeverAnswersExitsByItself: digestline push to a
// registry that accepts the connection and never answers ends on its own,
// exit status 2, as a transport failure naming the registry and the timeout.
func TestPushToARegistryThatNeverAnswersExitsByItself(t *testing.T) {
	t.Setenv("DIGESTLINE_REGISTRY_TIMEOUT", "300ms")
	addr := registrytest.Silent(t)
	layout := filepath.Join(t.TempDir(), "layout")
	cli(t, "build", e2etest.SourceDir(t, "hang"), "-o", layout)

	cmd := newRootCommand()
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	cmd.SetArgs([]string{"push", layout, addr + "/team/app:1"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a backstop for the test, not what ends the push
	defer cancel()
	start := time.Now()
	err := cmd.ExecuteContext(ctx)
	var ce *exitCodeError
	if !errors.As(err, &ce) || ce.code != 2 || ctx.Err() != nil {
		t.Fatalf("push = %v after %s, want exit status 2 by itself", err, time.Since(start))
	}
	for _, want := range []string{"transport error", addr, "300ms", "DIGESTLINE_REGISTRY_TIMEOUT"} {
		if !strings.Contains(describe(err), want) {
			t.Errorf("the error does not say %q:\n%s", want, describe(err))
		}
	}
}
