package runs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/runs"
)

// eachWayOfReading runs a test of run reads on one server, where they are
// direct gets (and make no consumer), and where the run log allows none
// (as on a cluster: bus.Provision) and they go through a consumer.
func eachWayOfReading(t *testing.T, test func(*testing.T, *bustest.Server)) {
	for _, direct := range []bool{true, false} {
		t.Run(map[bool]string{true: "direct gets", false: "a consumer"}[direct], func(t *testing.T) {
			t.Parallel()
			srv := bustest.NewServer(t)
			ctx := context.Background()
			runLog, err := srv.JetStream.Stream(ctx, events.RunLogStream)
			if err != nil {
				t.Fatal(err)
			}
			if !direct {
				cfg := runLog.CachedInfo().Config
				cfg.AllowDirect = false
				if _, err := srv.JetStream.UpdateStream(ctx, cfg); err != nil {
					t.Fatal(err)
				}
			}
			test(t, srv)
			if info, err := runLog.Info(ctx); err != nil || direct && info.State.Consumers != 0 {
				t.Errorf("direct reads left %d consumers on the run log: %v", info.State.Consumers, err)
			}
		})
	}
}

// TestEventsThroughWaitsForTheRunLog: the run log fills a moment after the
// stream; a read through an event the stream holds returns it, and one
// through an event that never comes fails when ctx ends (or, at the
// latest, with ErrLogBehind after a minute).
func TestEventsThroughWaitsForTheRunLog(t *testing.T) {
	t.Parallel()
	eachWayOfReading(t, eventsThroughWaitsForTheRunLog)
}

func eventsThroughWaitsForTheRunLog(t *testing.T, srv *bustest.Server) {
	b := bus.NewBus(srv.JetStream, "/digestline/test/1")
	ctx := context.Background()
	for i := range 20 {
		start, err := b.Start(ctx, events.BuildRequested, fmt.Sprintf("run-%d", i), "app", bustest.BuildRequest())
		if err != nil {
			t.Fatal(err)
		}
		end, err := b.Emit(ctx, start, events.BuildFailed, "", events.NewFailure(failure.Errorf(failure.Input, "yes", "no")))
		if err != nil {
			t.Fatal(err)
		}
		// Read at once, as the run indexer does when the end is delivered.
		raw, err := runs.EventsThrough(ctx, srv.JetStream, fmt.Sprintf("run-%d", i), end.ID())
		if err != nil || len(raw) != 2 {
			t.Fatalf("run %d: %d events, %v", i, len(raw), err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := runs.EventsThrough(short, srv.JetStream, "run-0", "no-such-event"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a read through an event that never comes: %v", err)
	}
}

// TestEventsReadsOneRunInOrder: a run's history is what its subjects
// hold, in stream order, without the other runs' events and without an
// event that claims another run than its subject says.
func TestEventsReadsOneRunInOrder(t *testing.T) {
	t.Parallel()
	eachWayOfReading(t, eventsReadsOneRunInOrder)
}

// TestEventsReadsARunLongerThanABatch: a run of more events than one
// direct get asks for (a release of many images, retried stages) is read
// whole, in order, across batches, with another run's events between.
func TestEventsReadsARunLongerThanABatch(t *testing.T) {
	t.Parallel()
	eachWayOfReading(t, eventsReadsARunLongerThanABatch)
}

func eventsReadsARunLongerThanABatch(t *testing.T, srv *bustest.Server) {
	b := bus.NewBus(srv.JetStream, "/digestline/test/1")
	ctx := context.Background()
	var want []string
	for i := range 600 {
		run := []string{"long", "other"}[i%2]
		ev, err := b.Start(ctx, events.BuildRequested, run, "app", bustest.BuildRequest())
		if err != nil {
			t.Fatal(err)
		}
		if run == "long" {
			want = append(want, ev.ID())
		}
	}
	run, err := runs.FoldThrough(ctx, srv.JetStream, "long", want[len(want)-1])
	if err != nil {
		t.Fatal(err)
	}
	raw, err := runs.Events(ctx, srv.JetStream, "long")
	if err != nil || len(raw) != len(want) || run.ID != "long" {
		t.Fatalf("read %d of %d events (run %q): %v", len(raw), len(want), run.ID, err)
	}
	for i, body := range raw {
		if ev, _, err := events.Parse(body); err != nil || ev.ID() != want[i] {
			t.Fatalf("event %d is %s, want %s: %v", i, ev.ID(), want[i], err)
		}
	}
}

func eventsReadsOneRunInOrder(t *testing.T, srv *bustest.Server) {
	b := bus.NewBus(srv.JetStream, "/digestline/test/1")
	ctx := context.Background()
	var want []string
	for i := range 3 {
		for _, run := range []string{"run-a", "run-b"} {
			ev, err := b.Start(ctx, events.BuildRequested, run, "app", bustest.BuildRequest())
			if err != nil {
				t.Fatal(err)
			}
			if run == "run-a" {
				want = append(want, ev.ID())
			}
			if i == 2 && run == "run-a" {
				next, err := b.Emit(ctx, ev, events.BuildFailed, "", events.NewFailure(failure.Errorf(failure.Input, "yes", "no")))
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, next.ID())
			}
		}
	}
	// run-b's event, filed under run-a's subject by a careless publisher;
	// and run-a's first event stored again, as a replayed dead letter is.
	stray, _ := events.NewEvent(b.Source(), events.BuildRequested, "run-b", "app", bustest.BuildRequest())
	stream, err := srv.JetStream.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := stream.GetLastMsgForSubject(ctx, events.BuildRequested.Subject("run-a"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(stray)
	for _, b := range [][]byte{body, stored.Data} {
		if _, err := srv.JetStream.Publish(ctx, events.BuildRequested.Subject("run-a"), b); err != nil {
			t.Fatal(err)
		}
	}

	// Read at once: the run log has them all, the strays too, when Events
	// returns (it waits for what the stream held when it was called).
	raw, err := runs.Events(ctx, srv.JetStream, "run-a")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range raw {
		ev, _, err := events.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev.ID())
	}
	if !slices.Equal(got, want) {
		t.Errorf("run-a's events %v, want %v", got, want)
	}
	if raw, err := runs.Events(ctx, srv.JetStream, "run-c"); err != nil || len(raw) != 0 {
		t.Errorf("a run with no events: %d events, %v", len(raw), err)
	}
	if _, err := runs.Events(ctx, srv.JetStream, "run.*"); err == nil {
		t.Error("a run id with wildcards was read")
	}
}
