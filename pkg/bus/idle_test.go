package bus_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// TestIdleNamesTheServicesThatAreNotRunning: of the services that take an
// event, Idle names those that are not running — a consumer no worker
// asks events of — and not one that waits for events or is busy with one.
func TestIdleNamesTheServicesThatAreNotRunning(t *testing.T) {
	t.Parallel()
	srv := bustest.NewServer(t)
	b := bus.NewBus(srv.JetStream, "/t")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	requested := events.BuildRequested.Subject("run-a")

	// Three services take build.requested. The builder once ran (its
	// consumer is there) and is gone; the run index runs and waits; the
	// pusher runs, and will be busy with the event.
	if _, err := srv.JetStream.CreateOrUpdateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{
		Durable: "builder", FilterSubjects: []string{events.BuildRequested.Filter()}, AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatal(err)
	}
	serve(ctx, t, b, "run-index", events.BuildRequested, func(context.Context, bus.Message) error { return nil })
	busy, release := make(chan struct{}), make(chan struct{})
	serve(ctx, t, b, "pusher", events.BuildRequested, func(context.Context, bus.Message) error {
		close(busy)
		<-release
		return nil
	})
	t.Cleanup(func() { close(release) }) // before the pusher stops: it waits for its handler

	all := []string{"builder", "pusher", "run-index"}
	waitFor(t, "the run index and the pusher to ask for events", func() bool {
		got, err := bus.Idle(ctx, srv.JetStream, requested)
		return err == nil && slices.Equal(got.Names, all) && slices.Equal(got.Idle, []string{"builder"})
	})
	if _, err := b.Start(ctx, events.BuildRequested, "run-a", "app", bustest.BuildRequest()); err != nil {
		t.Fatal(err)
	}
	<-busy
	got, err := bus.Idle(ctx, srv.JetStream, requested)
	if err != nil || !slices.Equal(got.Names, all) || !slices.Equal(got.Idle, []string{"builder"}) {
		t.Fatalf("Idle(%s) with the pusher busy = %+v, %v; want only the builder idle", requested, got, err)
	}
	got, err = bus.Idle(ctx, srv.JetStream, events.VerifyCompleted.Subject("run-a"))
	if err != nil || len(got.Names) != 0 {
		t.Fatalf("Idle of an event no service takes = %+v, %v; want none", got, err)
	}
}

// serve runs a router for durable with one handler until ctx ends.
func serve(ctx context.Context, t *testing.T, b *bus.Bus, durable string, n events.Name, h bus.Handler) {
	t.Helper()
	ctx, stop := context.WithCancel(ctx)
	r := b.Router(bus.ConsumerSpec{Durable: durable})
	r.Handle(n, h)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { stop(); <-done })
}
