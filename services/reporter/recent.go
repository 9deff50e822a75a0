package reporter

import (
	"context"
	"slices"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/nats-io/nats.go/jetstream"
)

// recentRuns reads the last events of the stream (scan of them at most) and
// summarizes the runs they belong to, most recently active first.
func (r *reporter) recentRuns(ctx context.Context, limit, scan int) ([]*runs.Run, error) {
	s, err := r.cfg.JetStream.Stream(ctx, events.StreamName)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	byID := map[string]*runs.Run{}
	var order []string
	first := info.State.FirstSeq
	if info.State.LastSeq > uint64(scan) {
		first = max(first, info.State.LastSeq-uint64(scan)+1)
	}
	add := func(subject string, data []byte) {
		ev, name, err := events.ParseMsg(subject, data)
		if err != nil {
			return // dead-lettered by its consumer: not part of the run
		}
		id := events.RunID(ev)
		run := byID[id]
		if run == nil {
			run = &runs.Run{}
			byID[id] = run
			order = append(order, id)
		}
		run.Add(ev, name)
	}
	if info.State.Msgs > 0 {
		// One ordered consumer reads the tail in batches: a request per few
		// hundred events, not one per event.
		cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: first})
		if err != nil {
			return nil, err
		}
		for done := false; !done; {
			batch, err := cons.FetchNoWait(500)
			if err != nil {
				return nil, err
			}
			n := 0
			for m := range batch.Messages() {
				n++
				meta, err := m.Metadata()
				if err != nil {
					continue
				}
				if meta.Sequence.Stream >= info.State.LastSeq {
					done = true // events published since the page was asked for wait for the next one
				}
				if meta.Sequence.Stream <= info.State.LastSeq {
					add(m.Subject(), m.Data())
				}
			}
			if err := batch.Error(); err != nil {
				return nil, err
			}
			done = done || n == 0
		}
	}
	slices.SortStableFunc(order, func(a, b string) int { return byID[b].Updated.Compare(byID[a].Updated) })
	out := []*runs.Run{}
	for _, id := range order[:min(limit, len(order))] {
		out = append(out, byID[id])
	}
	return out, nil
}
