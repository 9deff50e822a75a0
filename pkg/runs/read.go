package runs

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/digestline/digestline/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// Events returns the events of one run, in stream order, as they were
// stored: the server reads them from the run's subjects. Only valid events
// that are what their subject says are returned, the same ones a consumer
// would hand to a handler, each once (a dead letter replayed is stored
// again, with its id). A run that has no event yet has an empty history.
func Events(ctx context.Context, js jetstream.JetStream, runID string) ([]json.RawMessage, error) {
	if err := events.CheckRunID(runID); err != nil {
		return nil, err
	}
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return nil, fmt.Errorf("open %s (is the bus provisioned?): %w", events.StreamName, err)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: events.RunSubjects(runID)})
	if err != nil {
		return nil, fmt.Errorf("read run %s: %w", runID, err)
	}
	out := []json.RawMessage{}
	seen := map[string]bool{}
	for {
		// A run is a few dozen events: one batch, usually. Each fetch of an
		// ordered consumer makes a new server-side consumer, so batches are big.
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			return nil, fmt.Errorf("read run %s: %w", runID, err)
		}
		n, last := 0, true
		for m := range batch.Messages() {
			n++
			if meta, err := m.Metadata(); err == nil {
				last = meta.NumPending == 0
			}
			ev, _, err := events.ParseMsg(m.Subject(), m.Data())
			if err == nil && !seen[ev.ID()] {
				seen[ev.ID()] = true
				out = append(out, m.Data())
			}
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("read run %s: %w", runID, err)
		}
		if n == 0 || last {
			return out, nil
		}
	}
}
