package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/dev"
	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/cmd/digestline/internal/ship"
	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
)

func withFastRedelivery() e2etest.Option {
	return func(c *dev.Config) {
		c.BusOptions = append(c.BusOptions, bus.WithRedeliveryBackoff(func(uint64) time.Duration { return 10 * time.Millisecond }))
	}
}

// TestDeadLettersAreListedAndReplayed: the reporter cannot check the dev
// tag while the registry answers 503, gives up after its deliveries and
// dead-letters the event with the reason; once the registry is back,
// `dlq replay` finishes the run, and the dead-letter stream is empty.
func TestDeadLettersAreListedAndReplayed(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	flaky := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if down.Load() && strings.HasSuffix(r.URL.Path, "/manifests/dev") {
				http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	s, _ := e2etest.StartStack(t, e2etest.WithRegistryWrapper(flaky), withFastRedelivery())
	nats := "--nats=" + s.NATSURL

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	res, err := ship.Ship(ctx, s.Bus, ship.Request{Dir: e2etest.SourceDir(t, "dead letter"), Target: s.RegistryAddr + "/team/dlq:1"}, io.Discard)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ship while the registry is down: %v, %+v", err, res)
	}

	var dls []bus.DeadLetter
	e2etest.WaitFor(t, "the reporter's dead letter", func() bool {
		dls = nil
		return json.Unmarshal([]byte(cli(t, "dlq", "list", "--json", nats)), &dls) == nil && len(dls) == 1
	})
	dl := dls[0]
	if dl.Consumer != "reporter" || dl.Subject != events.VerifyCompleted.Subject(dl.RunID) || dl.Deliveries != 5 || !strings.Contains(dl.Reason, "503") || dl.RunID == "" {
		t.Fatalf("dead letter %+v", dl)
	}
	if table := cli(t, "dlq", "list", nats); !strings.Contains(table, "reporter") || !strings.Contains(table, dl.RunID) {
		t.Fatalf("dlq list:\n%s", table)
	}
	if shown := cli(t, "dlq", "show", "1", nats); !strings.Contains(shown, `"type": "dev.digestline.verify.completed.v1"`) {
		t.Fatalf("dlq show printed:\n%s", shown)
	}

	var listed api.Page[bus.DeadLetter]
	if s.GetJSON(t, "/v1/dlq", &listed) != http.StatusOK || len(listed.Items) != 1 || listed.Items[0].Sequence != dl.Sequence {
		t.Fatalf("GET /v1/dlq: %+v", listed)
	}
	for token, want := range map[string]int{"": http.StatusUnauthorized, "wrong-token-0123456789": http.StatusUnauthorized} {
		if got := s.Post(t, "/v1/dlq/1/replay", token, ""); got != want {
			t.Errorf("replay with token %q: %d, want %d", token, got, want)
		}
	}

	down.Store(false)
	if out := cli(t, "dlq", "replay", "--all", nats); !strings.Contains(out, "replayed #1 on "+events.VerifyCompleted.Subject(dl.RunID)+" for reporter") {
		t.Fatalf("dlq replay printed %q", out)
	}
	e2etest.WaitFor(t, "the replayed run's promotion", func() bool { return s.Current(t, "dev", s.RegistryAddr+"/team/dlq") != "" })
	if left := cli(t, "dlq", "list", "--json", nats); strings.TrimSpace(left) != "[]" {
		t.Fatalf("dead letters left after the replay: %s", left)
	}
	// The run's history shows the event once, though the stream holds it
	// twice: where it was dead-lettered, and the replay.
	n := 0
	for _, name := range e2etest.Names(s.RunEvents(t, dl.RunID)) {
		if name == "verify.completed" {
			n++
		}
	}
	if n != 2 { // the build's, and the promotion's re-verification
		t.Fatalf("%d verify.completed in the run, want 2", n)
	}
}
