package runs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/digestline/digestline/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrLogBehind is a run read that waited for an event the run log has not
// received from the events stream.
var ErrLogBehind = errors.New("the run log is behind the events stream")

// Events returns the events of one run, in stream order: the server reads
// them from the run's subjects in the run log (events.RunLogStream), at a
// cost that is the run's, whatever the history. The run log fills a moment
// behind the stream, so Events first waits (up to a few seconds) until it
// has every event the stream held when it was called: a run read right
// after its request was accepted has that request. Only
// valid events that are what their subject says are returned, the same
// ones a consumer would hand to a handler, each once (a dead letter
// replayed is stored again, with its id). A run that has no event yet has
// an empty history.
func Events(ctx context.Context, js jetstream.JetStream, runID string) ([]json.RawMessage, error) {
	return raw(ctx, js, runID, "")
}

// Fold is the run its events (Events) fold into, each parsed once; a run
// that has no event yet folds into an empty Run (no ID).
func Fold(ctx context.Context, js jetstream.JetStream, runID string) (*Run, error) {
	return fold(ctx, js, runID, "")
}

// FoldThrough is Fold of the events up to last (EventsThrough).
func FoldThrough(ctx context.Context, js jetstream.JetStream, runID, last string) (*Run, error) {
	return fold(ctx, js, runID, last)
}

// EventsThrough is Events up to the event whose id is last, which the
// events stream holds: the run log receives each event a moment after the
// stream stored it, so this waits for it (until ctx ends, or a minute),
// and fails with ErrLogBehind when it does not come.
func EventsThrough(ctx context.Context, js jetstream.JetStream, runID, last string) ([]json.RawMessage, error) {
	return raw(ctx, js, runID, last)
}

// logWait is how long EventsThrough waits for the run log at most.
const logWait = time.Minute

// raw is the bytes of a run's events (through last, when it is set).
func raw(ctx context.Context, js jetstream.JetStream, runID, last string) ([]json.RawMessage, error) {
	out := []json.RawMessage{}
	if err := read(ctx, js, runID, last, func(_ cloudevents.Event, _ events.Name, b json.RawMessage) { out = append(out, b) }); err != nil {
		return nil, err
	}
	return out, nil
}

// fold is the run a run's events (through last, when it is set) fold into.
func fold(ctx context.Context, js jetstream.JetStream, runID, last string) (*Run, error) {
	run := &Run{}
	if err := read(ctx, js, runID, last, func(ev cloudevents.Event, name events.Name, _ json.RawMessage) { run.Add(ev, name) }); err != nil {
		return nil, err
	}
	return run, nil
}

// read hands each valid event of a run (through last, when it is set) to
// keep, once and in order: by batched direct gets where the run log
// allows them (history.direct), else through an ordered consumer.
func read(ctx context.Context, js jetstream.JetStream, runID, last string, keep func(cloudevents.Event, events.Name, json.RawMessage)) error {
	if err := events.CheckRunID(runID); err != nil {
		return err
	}
	if last == "" {
		// The run log is read once it caught up with the stream.
		if _, err := awaitLog(ctx, js); err != nil {
			return fmt.Errorf("read run %s: %w", runID, err)
		}
	}
	h := history{seen: map[string]bool{}, keep: keep}
	read, err := h.direct(ctx, js, runID, last)
	if err == nil && !read {
		err = h.consume(ctx, js, runID, last)
	}
	if err != nil {
		return fmt.Errorf("read run %s: %w", runID, err)
	}
	return nil
}

// consume reads the run through an ordered consumer: a consumer made on
// the server for the read, and removed after it.
func (h *history) consume(ctx context.Context, js jetstream.JetStream, runID, last string) error {
	s, err := openRunLog(ctx, js)
	if err != nil {
		return err
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.RunLogFilter(runID)}})
	if err != nil {
		return err
	}
	if last == "" {
		return h.fetch(cons)
	}
	return h.through(ctx, cons, last)
}

// directBatch is how many events a direct read asks for at once: a run
// is a few dozen.
const directBatch = 256

// direct reads the run with batched direct gets: a request, answered with
// the run's events, instead of a consumer made and removed on the server
// for each read. The run log answers them where it allows direct gets (on
// one server: bus.Provision), and direct says false where it does not.
// Waiting for last (the run log receives each event a moment after the
// stream stored it), it asks again for what came after what it has.
func (h *history) direct(ctx context.Context, js jetstream.JetStream, runID, last string) (bool, error) {
	wctx, cancel := context.WithTimeout(ctx, logWait)
	defer cancel()
	next := uint64(1)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		more := false
		err := getBatch(wctx, js, events.RunLogStream, events.RunLogFilter(runID), next, directBatch, func(m directMsg) {
			next, more = m.seq+1, m.more
			h.add(m.subject, m.data)
		})
		switch {
		case errors.Is(err, errNoDirect) && next == 1:
			return false, nil // no direct gets here
		case err != nil && ctx.Err() == nil && wctx.Err() == nil:
			return true, err
		}
		switch {
		case last != "" && h.seen[last]:
			return true, nil
		case ctx.Err() != nil: // an answer cut short ends quietly
			return true, fmt.Errorf("reading %s: %w", events.RunLogStream, ctx.Err())
		case wctx.Err() != nil:
			return true, behind(last)
		case more:
			continue
		case last == "":
			return true, nil
		}
		select {
		case <-wctx.Done():
		case <-time.After(wait):
		}
	}
}

// behind is the error of a read that waited for last in vain (or, with
// no last, for any answer).
func behind(last string) error {
	if last == "" {
		return fmt.Errorf("%w: %s did not answer within %s", ErrLogBehind, events.RunLogStream, logWait)
	}
	return fmt.Errorf("%w: event %s is not in %s after %s (check the stream's source: nats stream info %s)",
		ErrLogBehind, last, events.RunLogStream, logWait, events.RunLogStream)
}

// catchUpWait bounds awaitLog: an event deleted from the stream before the
// run log received it (a purge) is never received, and a read then shows
// what the run log holds rather than wait on.
const catchUpWait = 5 * time.Second

// openRunLog opens the run log; its cached info is read as it opens.
func openRunLog(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, events.RunLogStream)
	if err != nil {
		return nil, fmt.Errorf("open %s (is the bus provisioned?): %w", events.RunLogStream, err)
	}
	return s, nil
}

// awaitLog opens the run log once it has received every event the stream
// holds now: its source has read through the stream's last sequence.
func awaitLog(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	origin, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return nil, fmt.Errorf("open %s (is the bus provisioned?): %w", events.StreamName, err)
	}
	last := origin.CachedInfo().State.LastSeq // js.Stream has just read it
	deadline := time.Now().Add(catchUpWait)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		runLog, err := openRunLog(ctx, js) // its info read after the stream's
		if err != nil {
			return nil, err
		}
		info := runLog.CachedInfo()
		if len(info.Sources) == 0 || info.Sources[0].Seq >= last || time.Now().After(deadline) {
			return runLog, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %s to receive the events: %w", events.RunLogStream, ctx.Err())
		case <-time.After(wait):
		}
	}
}

// history is a run's events as they are read: each valid one is parsed
// and kept once.
type history struct {
	seen map[string]bool
	keep func(cloudevents.Event, events.Name, json.RawMessage)
}

func (h *history) add(subject string, data []byte) {
	ev, name, err := events.ParseMsg(subject, data)
	if err == nil && !h.seen[ev.ID()] {
		h.seen[ev.ID()] = true
		h.keep(ev, name, data)
	}
}

// fetch reads what the run log holds now. A run is a few dozen events:
// one batch, usually. Each fetch of an ordered consumer makes a new
// server-side consumer (after the last event read), so batches are big.
func (h *history) fetch(cons jetstream.Consumer) error {
	for {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			return err
		}
		n, caughtUp := 0, true
		for m := range batch.Messages() {
			n++
			if meta, err := m.Metadata(); err == nil {
				caughtUp = meta.NumPending == 0
			}
			h.add(m.Subject(), m.Data())
		}
		if err := batch.Error(); err != nil {
			return err
		}
		if n == 0 || caughtUp {
			return nil
		}
	}
}

// through reads until the event whose id is last: the server sends each
// event as the run log receives it, on one consumer.
func (h *history) through(ctx context.Context, cons jetstream.Consumer, last string) error {
	iter, err := cons.Messages()
	if err != nil {
		return err
	}
	defer iter.Stop()
	wctx, cancel := context.WithTimeout(ctx, logWait)
	defer cancel()
	defer context.AfterFunc(wctx, iter.Stop)()
	for !h.seen[last] {
		m, err := iter.Next()
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("waiting for event %s: %w", last, ctx.Err())
		case wctx.Err() != nil:
			return behind(last)
		case err != nil:
			return err
		}
		h.add(m.Subject(), m.Data())
	}
	return nil
}
