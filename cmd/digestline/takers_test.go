package main

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/events"
)

// Each event's taker (events.Name.Taker, which ship names when a run
// waits for a service that is not running) is the service whose consumer
// takes it in the running pipeline.
func TestEachEventIsTakenByItsTaker(t *testing.T) {
	t.Parallel()
	s, _ := e2etest.StartStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range events.Names() {
		taker := n.Taker()
		if taker == "" {
			continue
		}
		for {
			cons, err := s.JetStream.Consumer(ctx, events.StreamName, taker)
			if err == nil && slices.Contains(cons.CachedInfo().Config.FilterSubjects, n.Filter()) {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%s's taker is %q, whose consumer does not take it (%v)", n, taker, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
