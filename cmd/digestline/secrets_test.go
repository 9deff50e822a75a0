package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/digestline/digestline/cmd/digestline/internal/dev"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/services/reporter"
	"github.com/google/go-containerregistry/pkg/authn"
)

// lockedBuffer collects log output from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// TestNoSecretReachesALogAnEventOrASpan runs a whole pipeline — build, an
// authenticated push, verification, promotion through the token-guarded API —
// with debug logging, and looks for the registry password and the API token
// in every log line, every event of the run and every span attribute.
func TestNoSecretReachesALogAnEventOrASpan(t *testing.T) {
	const password, token = "registry-pa55word-do-not-leak", "api-token-do-not-leak-0123456789"
	t.Setenv("DIGESTLINE_API_TOKEN", token)
	requireAuth := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != "ci" || p != password {
				w.Header().Set("WWW-Authenticate", `Basic realm="digestline-test"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	var logs lockedBuffer
	client := registry.New(registry.WithAuth(&authn.Basic{Username: "ci", Password: password}))
	s, _ := startStack(t, withRegistryWrapper(requireAuth), withRegistryClient(client), func(c *dev.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.Reporter.Tokens = map[string]string{"ci": token}
	})
	res, out, err := s.ship(t, sourceDir(t, "secrets"), "team/secret:1")
	if err != nil {
		t.Fatalf("ship: %v\n%s", err, out)
	}
	if out, err := s.promoteCLI(t, res.Promotion.Repository+"@"+res.Promotion.Digest, "staging"); err != nil {
		t.Fatalf("promote: %v\n%s", err, out)
	}

	var seen strings.Builder
	seen.WriteString(logs.String())
	seen.WriteString(out)
	for _, ev := range s.runEvents(t, res.RunID) {
		b, _ := json.Marshal(ev)
		seen.Write(b)
	}
	for _, sp := range s.spans.Ended() {
		seen.WriteString(sp.Name())
		for _, a := range sp.Attributes() {
			seen.WriteString(a.Value.Emit())
		}
		for _, e := range sp.Events() {
			for _, a := range e.Attributes {
				seen.WriteString(a.Value.Emit())
			}
		}
		seen.WriteString(sp.Status().Description)
	}
	var hist []reporter.HistoryEntry
	s.getJSON(t, "/v1/history", &hist)
	b, _ := json.Marshal(hist)
	seen.Write(b)
	if logs.String() == "" || len(s.spans.Ended()) == 0 {
		t.Fatal("nothing was captured: the test proves nothing")
	}
	for _, secret := range []string{password, token} {
		if strings.Contains(seen.String(), secret) {
			t.Errorf("%q leaked into logs, events, spans or records", secret)
		}
	}
}
