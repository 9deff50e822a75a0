package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/digestline/digestline/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// Liveness is what the server knows of the service behind a durable
// consumer of the events stream.
type Liveness int

const (
	// Absent: no service has made the consumer on this bus.
	Absent Liveness = iota
	// Stopped: the consumer is there and no worker asks it for events
	// or works on one.
	Stopped
	// Running: a worker waits for events (its pull request is with the
	// server) or works on some (their acks are pending).
	Running
)

// ConsumerLiveness says whether the service that takes events from the
// durable consumer is running, from the consumer's state on the server:
// what a run whose next step is that service's waits for, when nothing
// happens.
func ConsumerLiveness(ctx context.Context, js jetstream.JetStream, durable string) (Liveness, error) {
	cons, err := js.Consumer(ctx, events.StreamName, durable) // one request: its info as it is now
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return Absent, nil
	}
	if err != nil {
		return Absent, fmt.Errorf("read consumer %s: %w", durable, err)
	}
	if info := cons.CachedInfo(); info.NumWaiting == 0 && info.NumAckPending == 0 {
		return Stopped, nil
	}
	return Running, nil
}

// Note says why a run waits for service, whose consumer is l: it never
// ran on this bus, or it is not running; "" when it runs (busy, or the run
// waits its turn behind others).
func (l Liveness) Note(service string) string {
	switch l {
	case Absent:
		return fmt.Sprintf("no %s has ever run on this bus: start it (digestline dev runs every service; docs/deployment.md)", service)
	case Stopped:
		return fmt.Sprintf("the run waits for the %s, which is not running (no worker asks its consumer for events); it goes on once the %s starts", service, service)
	}
	return ""
}
