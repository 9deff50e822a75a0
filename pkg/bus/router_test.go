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
	built, done := countBuilds(t, b)

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

// TestRouterWaitsForItsStreamAsItStarts: a service that starts while the
// bus cannot take its consumer (here: its stream is not there yet; on a
// cluster, a leader being elected) tries again instead of stopping, and
// consumes once it can.
func TestRouterWaitsForItsStreamAsItStarts(t *testing.T) {
	t.Parallel()
	srv := bustest.NewServer(t)
	ctx := context.Background()
	if err := srv.JetStream.DeleteStream(ctx, events.StreamName); err != nil {
		t.Fatal(err)
	}
	log, tried := bustest.Logged("not ready; retrying")
	b := bus.NewBus(srv.JetStream, "/t", bus.WithLogger(log))
	built, done := countBuilds(t, b)

	select { // a try without the stream
	case <-tried:
	case err := <-done:
		done <- err
		t.Fatalf("Run returned (%v) as it started", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the router never tried to make its consumer")
	}
	if err := bus.Provision(ctx, srv.JetStream, bus.ProvisionOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Start(ctx, events.BuildRequested, "run-a", "app", bustest.BuildRequest()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the event, once the stream is there", func() bool { return built.Load() == 1 })
}

// countBuilds runs a router of b's that counts the build.requested events
// it is handed, until the test ends; done says what its Run returned.
func countBuilds(t *testing.T, b *bus.Bus) (built *atomic.Int32, done chan error) {
	built, done = &atomic.Int32{}, make(chan error, 1)
	r := b.Router(bus.ConsumerSpec{Durable: "svc"})
	r.Handle(events.BuildRequested, func(context.Context, bus.Message) error { built.Add(1); return nil })
	ctx, stop := context.WithCancel(context.Background())
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return once stopped")
		}
	})
	return built, done
}
