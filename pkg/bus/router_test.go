package bus_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
)

// TestRouterPullsAgainWhenItsConsumerIsDeleted: a consumer deleted under a
// running service (an operator's mistake, or a cluster that lost it) ends
// the pull the service had; the router makes the consumer again and goes
// on with the next event, instead of returning while the service runs on
// without it.
func TestRouterPullsAgainWhenItsConsumerIsDeleted(t *testing.T) {
	t.Parallel()
	srv := bustest.NewServer(t)
	b := bus.NewBus(srv.JetStream, "/t")
	ctx := context.Background()
	var built atomic.Int32
	r := b.Router(bus.ConsumerSpec{Durable: "svc"})
	r.Handle(events.BuildRequested, func(context.Context, bus.Message) error { built.Add(1); return nil })
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return once stopped")
		}
	})

	if _, err := b.Start(ctx, events.BuildRequested, "run-a", "app", bustest.BuildRequest()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first event", func() bool { return built.Load() == 1 })
	if err := srv.JetStream.DeleteConsumer(ctx, events.StreamName, "svc"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Start(ctx, events.BuildRequested, "run-b", "app", bustest.BuildRequest()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for built.Load() < 2 {
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("Run returned (%v) while the service runs on", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the event after the consumer was deleted never came")
		}
	}
}
