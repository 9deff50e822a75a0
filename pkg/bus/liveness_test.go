package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
)

// TestConsumerLivenessTellsAServiceThatIsNotRunning: a durable consumer
// no service made is absent, one no worker asks events of is stopped, and
// one whose worker waits for events, or is busy with one, is running.
func TestConsumerLivenessTellsAServiceThatIsNotRunning(t *testing.T) {
	t.Parallel()
	srv := bustest.NewServer(t)
	b := bus.NewBus(srv.JetStream, "/t")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	is := func(durable string, want bus.Liveness) bool {
		got, err := bus.ConsumerLiveness(ctx, srv.JetStream, durable)
		return err == nil && got == want
	}
	if !is("builder", bus.Absent) {
		t.Fatal("a consumer no service made is not absent")
	}
	bustest.Departed(t, srv.JetStream, "builder", events.BuildRequested) // it once ran, and is gone
	if !is("builder", bus.Stopped) {
		t.Fatal("a consumer no worker asks events of is not stopped")
	}

	busy, release := make(chan struct{}), make(chan struct{})
	bustest.Serve(t, srv.JetStream, "builder", events.BuildRequested, func(context.Context, bus.Message) error {
		close(busy)
		<-release
		return nil
	})
	t.Cleanup(func() { close(release) }) // before the builder stops: it waits for its handler
	waitFor(t, "the builder, waiting for events, to be running", func() bool { return is("builder", bus.Running) })
	if _, err := b.Start(ctx, events.BuildRequested, "run-a", "app", bustest.BuildRequest()); err != nil {
		t.Fatal(err)
	}
	<-busy
	if !is("builder", bus.Running) {
		t.Fatal("the builder, busy with an event, is not running")
	}
}
