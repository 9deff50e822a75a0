package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
)

// A mistyped command line says how the command is used and fails; an
// error of a command that ran does not repeat its usage.
func TestWrongArgumentsSayHowTheCommandIsUsed(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		code      int
		say       string
		withUsage bool
	}{
		{args: []string{"rollback", "dev"}, code: 1, say: "usage: digestline rollback ENV REPOSITORY", withUsage: true},
		{args: []string{"ship", "--bogus"}, code: 1, say: "unknown flag: --bogus", withUsage: true},
		{args: []string{"freeze", "dev"}, code: 1, say: `required flag(s) "reason", "until" not set`, withUsage: true},
		{args: []string{"dlq", "lst"}, code: 1, say: `unknown command "lst" for "digestline dlq"`, withUsage: true},
		{args: []string{"shipp"}, code: 1, say: "usage: digestline COMMAND", withUsage: true},
		{args: []string{"verify", "127.0.0.1:1/app:v1"}, code: 1, say: "not the tag 127.0.0.1:1/app:v1: `digestline inspect 127.0.0.1:1/app:v1` prints the digest"},
		{args: []string{"pull", "NOT A REF"}, code: 1, say: "pull takes a digest reference, REPOSITORY@sha256:<hex>: "},
		{args: []string{"dlq"}, code: 0},
		// Checked before the bus is reached: no stack runs here.
		{args: []string{"ship", "no-such-dir", "127.0.0.1:1/app:1", "--nats", "nats://127.0.0.1:1"}, code: 1, say: `source "no-such-dir" is not a directory`},
		{args: []string{"ship", ".", "127.0.0.1:1/App:1", "--nats", "nats://127.0.0.1:1"}, code: 1, say: `target "127.0.0.1:1/App:1"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stderr bytes.Buffer
			root := newRootCommand()
			root.SetOut(io.Discard)
			code := run(context.Background(), root, tc.args, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.say) {
				t.Fatalf("stderr does not say %q:\n%s", tc.say, stderr.String())
			}
			if got := strings.Contains(stderr.String(), "usage: "); got != tc.withUsage {
				t.Fatalf("usage printed: %v, want %v:\n%s", got, tc.withUsage, stderr.String())
			}
		})
	}
}
