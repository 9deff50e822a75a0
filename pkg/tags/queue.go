package tags

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A tag whose environment takes every digest in turn (a policy's
// `promotions: queue`) queues its requests: Enqueue files a run's request
// when the run starts, a move waits while an older request in the queue
// has not moved the tag, and the move (or Dequeue, when the run ends
// without one) takes it out. Runs to such a tag are then never superseded
// by one requested later: each moves the tag in turn.

// QueueTimeout is how long a queued request holds the ones after it: a
// run that neither moved the tag nor ended in that time (its end lost) is
// passed by, so the queue never stops for good.
const QueueTimeout = 30 * time.Minute

// Enqueue files req (its run, and when it was requested) in tag's queue.
// Enqueueing it again changes nothing.
func (l *Ledger) Enqueue(ctx context.Context, tag string, req Request) error {
	req.RequestedAt = req.RequestedAt.UTC().Round(0)
	if _, err := l.kv.Put(ctx, runKey(req.RunID), []byte(tag)); err != nil {
		return fmt.Errorf("queue run %s for tag %s: %w", req.RunID, tag, err)
	}
	return l.update(ctx, tag, func(e *entry) bool {
		if e.Last != nil && e.Last.RunID == req.RunID || slices.ContainsFunc(e.Queue, func(q lease) bool { return q.RunID == req.RunID }) {
			return false
		}
		e.Queue = slices.DeleteFunc(e.Queue, func(q lease) bool { return l.now().Sub(q.Since) >= QueueTimeout }) // passed by for good
		e.Queue = append(e.Queue, lease{Request: req, Since: l.now()})
		return true
	})
}

// Queued reports whether the run's request was filed in a queue (and
// its run has not ended).
func (l *Ledger) Queued(ctx context.Context, runID string) (bool, error) {
	_, err := l.kv.Get(ctx, runKey(runID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("find run %s's queue: %w", runID, err)
	}
	return true, nil
}

// Dequeue takes the run's request out of the queue it is in, if any: the
// run ended.
func (l *Ledger) Dequeue(ctx context.Context, runID string) error {
	kve, err := l.kv.Get(ctx, runKey(runID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find run %s's queue: %w", runID, err)
	}
	tag := string(kve.Value())
	if err := l.update(ctx, tag, func(e *entry) bool {
		n := len(e.Queue)
		e.Queue = without(e.Queue, runID)
		return len(e.Queue) != n
	}); err != nil {
		return err
	}
	return l.kv.Delete(ctx, runKey(runID))
}

// ahead is the oldest request queued before req that has not moved the
// tag (nil when none): req waits for it. Only a queued request waits.
func (l *Ledger) ahead(e entry, req Request) *lease {
	if !slices.ContainsFunc(e.Queue, func(q lease) bool { return q.RunID == req.RunID }) {
		return nil
	}
	var first *lease
	for i, q := range e.Queue {
		if q.RunID != req.RunID && req.Newer(q.Request) && l.now().Sub(q.Since) < QueueTimeout && (first == nil || first.Newer(q.Request)) {
			first = &e.Queue[i]
		}
	}
	return first
}

// update changes tag's entry with change (which reports whether it changed
// anything), retrying when another writer was first.
func (l *Ledger) update(ctx context.Context, tag string, change func(*entry) bool) error {
	for {
		e, rev, err := l.get(ctx, tag)
		if err != nil {
			return err
		}
		if !change(&e) {
			return nil
		}
		if _, err := l.put(ctx, tag, e, rev); !errors.Is(err, errRaced) {
			return err
		}
	}
}

func without(q []lease, runID string) []lease {
	return slices.DeleteFunc(slices.Clone(q), func(l lease) bool { return l.RunID == runID })
}

// runKey is the key that names the queue a run is in.
func runKey(runID string) string { return "r." + runID }
