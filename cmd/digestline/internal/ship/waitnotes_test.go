package ship

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
)

// A run whose service is down does not wait in silence: ship names the
// service that takes the run's latest event and is not running, or says
// that none takes it. A service that runs gets no such line.
func TestShipSaysWhichServiceARunWaitsFor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		setup func(*testing.T, *bustest.Server)
		want  string // "" for no [WAIT] line
	}{{
		name: "no builder ever ran (the run index did)",
		setup: func(t *testing.T, s *bustest.Server) {
			bustest.Serve(t, s.JetStream, "reporter-run-index", events.BuildRequested, func(context.Context, bus.Message) error { return nil })
		},
		want: ": no builder has ever run on this bus: start it",
	}, {
		name: "the builder is down",
		setup: func(t *testing.T, s *bustest.Server) {
			bustest.Departed(t, s.JetStream, "builder", events.BuildRequested) // it ran once: its consumer is there
		},
		want: ": the run waits for the builder, which is not running (no worker asks its consumer for events); it goes on once the builder starts",
	}, {
		name: "the builder runs (and never finishes)",
		setup: func(t *testing.T, s *bustest.Server) {
			bustest.Serve(t, s.JetStream, "builder", events.BuildRequested, func(context.Context, bus.Message) error { return nil })
		},
	}, {
		// A report of the step it works on (a push.stage, before a long
		// upload) is taken by no service: the run waits for the one
		// working, which holds the event it answers.
		name: "the builder is busy, after a report",
		setup: func(t *testing.T, s *bustest.Server) {
			b, release := bus.NewBus(s.JetStream, "/t"), make(chan struct{})
			bustest.Serve(t, s.JetStream, "builder", events.BuildRequested, func(ctx context.Context, m bus.Message) error {
				if _, err := b.Emit(ctx, m.Event, events.PushStage, "app", events.StageReport{Stage: events.StageUpload, Status: events.StatusOK}); err != nil {
					return err
				}
				<-release
				return nil
			})
			t.Cleanup(func() { close(release) }) // before the builder stops: it waits for its handler
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := bustest.NewServer(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			tc.setup(t, s)
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello"), 0o644); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			runCtx, stop := context.WithTimeout(ctx, 2*time.Second)
			defer stop()
			_, err := Ship(runCtx, bus.NewBus(s.JetStream, "/t"), Request{Dir: dir, Target: "127.0.0.1:1/app:1", Quiet: 300 * time.Millisecond}, &out)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("ship ended %v, want it still waiting at its timeout\n%s", err, out.String())
			}
			t.Logf("ship said:\n%s", out.String())
			waits := strings.Count(out.String(), "[WAIT]")
			switch {
			case tc.want == "" && waits > 0:
				t.Fatalf("a [WAIT] line while the service runs:\n%s", out.String())
			case tc.want != "" && (!strings.Contains(out.String(), tc.want) || waits != 1):
				t.Fatalf("want one [WAIT] line saying %q (said once, though checked again):\n%s", tc.want, out.String())
			}
		})
	}
}

// With ShipJSON, whose output is events, a [WAIT] line goes to Notes and
// every line of the output stays an event.
func TestShipJSONSaysWhatARunWaitsForOnItsNotes(t *testing.T) {
	t.Parallel()
	s := bustest.NewServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var out, notes bytes.Buffer
	_, err := ShipJSON(ctx, bus.NewBus(s.JetStream, "/t"), Request{Dir: t.TempDir(), Target: "127.0.0.1:1/app:1", Quiet: 300 * time.Millisecond, Notes: &notes}, &out)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ship ended %v, want it still waiting at its timeout", err)
	}
	if !strings.Contains(notes.String(), "[WAIT] nothing for ") || !strings.Contains(notes.String(), "no builder has ever run on this bus") {
		t.Fatalf("notes: %q", notes.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Fatalf("a line of the JSON output is not an event: %q", line)
		}
	}
}
