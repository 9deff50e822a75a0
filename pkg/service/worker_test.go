package service_test

import (
	"context"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/service"
)

// TestWorkerWaitsForTheBusAsItStarts: a service that starts while the bus
// cannot open what its handlers share (here: its blob store is not there
// yet; on a cluster, its leader being elected) tries again instead of
// stopping, and opens it once the bus can.
func TestWorkerWaitsForTheBusAsItStarts(t *testing.T) {
	t.Parallel()
	srv := bustest.NewServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.JetStream.DeleteObjectStore(ctx, events.BlobBucket); err != nil {
		t.Fatal(err)
	}
	log, tried := bustest.Logged("not ready; retrying")
	opened := make(chan error, 1)
	go func() {
		w, err := service.Deps{JetStream: srv.JetStream, Logger: log}.Worker(ctx, "builder")
		if err == nil && w.Blobs == nil {
			t.Error("a worker without its blob store")
		}
		opened <- err
	}()
	select { // a try without the blob store
	case <-tried:
	case err := <-opened:
		t.Fatalf("the worker was opened (or gave up: %v) without its blob store", err)
	case <-ctx.Done():
		t.Fatal("the worker never tried to open its blob store")
	}
	if err := bus.Provision(ctx, srv.JetStream, bus.ProvisionOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := <-opened; err != nil {
		t.Fatalf("the worker, once the bus holds its blob store: %v", err)
	}
}
