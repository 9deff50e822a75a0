package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// HeaderReplayOf marks an event republished from the dead-letter stream,
// with the dead-letter sequence it came from.
const HeaderReplayOf = "Digestline-Replay-Of"

// DeadLetter is one event in the dead-letter stream: what it was, which
// consumer gave up on it, after how many deliveries, and why.
type DeadLetter struct {
	Sequence       uint64    `json:"sequence"` // in DIGESTLINE_DLQ: what show and replay take
	Time           time.Time `json:"time"`
	Subject        string    `json:"subject"` // where it was published
	Consumer       string    `json:"consumer"`
	Reason         string    `json:"reason"`
	Deliveries     int       `json:"deliveries"`
	StreamSequence uint64    `json:"streamSequence"` // in DIGESTLINE
	// EventID, Type and RunID are read from the body when it is an event.
	EventID string `json:"eventId,omitempty"`
	Type    string `json:"type,omitempty"`
	RunID   string `json:"runId,omitempty"`
	Body    []byte `json:"body,omitempty"`
}

// DeadLetters lists the dead-letter stream, oldest first, at most limit
// entries (0: all).
func DeadLetters(ctx context.Context, js jetstream.JetStream, limit int) ([]DeadLetter, error) {
	s, err := js.Stream(ctx, events.DeadLetterStream)
	if err != nil {
		return nil, fmt.Errorf("open %s (is the bus provisioned?): %w", events.DeadLetterStream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	out := []DeadLetter{}
	if info.State.Msgs == 0 {
		return out, nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && (limit <= 0 || len(out) < limit); seq++ {
		dl, err := deadLetterAt(ctx, s, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // replayed (deleted) since
		}
		if err != nil {
			return nil, err
		}
		dl.Body = nil
		out = append(out, dl)
	}
	return out, nil
}

// DeadLetterPage lists dead letters newest first, without their bodies:
// at most limit of those before sequence before (0: from the newest), and
// the before of the next page (0: none). It reads at most 4×limit
// sequences, so a page costs the same however long the stream; one with
// many replayed (deleted) letters may hold fewer than limit.
func DeadLetterPage(ctx context.Context, js jetstream.JetStream, before uint64, limit int) ([]DeadLetter, uint64, error) {
	s, err := js.Stream(ctx, events.DeadLetterStream)
	if err != nil {
		return nil, 0, fmt.Errorf("open %s (is the bus provisioned?): %w", events.DeadLetterStream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, 0, err
	}
	out := []DeadLetter{}
	if info.State.Msgs == 0 {
		return out, 0, nil
	}
	seq := info.State.LastSeq
	if before > 0 {
		seq = min(seq, before-1)
	}
	for read := 0; seq >= info.State.FirstSeq && seq > 0 && len(out) < limit && read < 4*limit; seq, read = seq-1, read+1 {
		dl, err := deadLetterAt(ctx, s, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // replayed (deleted) since
		}
		if err != nil {
			return nil, 0, err
		}
		dl.Body = nil
		out = append(out, dl)
	}
	if seq < info.State.FirstSeq || seq == 0 {
		return out, 0, nil
	}
	return out, seq + 1, nil
}

// DeadLetterAt returns one dead letter, body included.
func DeadLetterAt(ctx context.Context, js jetstream.JetStream, seq uint64) (DeadLetter, error) {
	s, err := js.Stream(ctx, events.DeadLetterStream)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("open %s (is the bus provisioned?): %w", events.DeadLetterStream, err)
	}
	dl, err := deadLetterAt(ctx, s, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return dl, fmt.Errorf("no dead letter #%d (replayed already?): %w", seq, err)
	}
	return dl, err
}

func deadLetterAt(ctx context.Context, s jetstream.Stream, seq uint64) (DeadLetter, error) {
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		return DeadLetter{}, err
	}
	h := m.Header
	dl := DeadLetter{Sequence: m.Sequence, Time: m.Time, Subject: h.Get(HeaderDLQSubject), Consumer: h.Get(HeaderDLQConsumer),
		Reason: h.Get(HeaderDLQReason), Body: m.Data}
	dl.Deliveries, _ = strconv.Atoi(h.Get(HeaderDLQDeliveries))
	dl.StreamSequence, _ = strconv.ParseUint(h.Get(HeaderDLQSequence), 10, 64)
	if ev, _, err := events.Parse(m.Data); err == nil {
		dl.EventID, dl.Type, dl.RunID = ev.ID(), ev.Type(), events.RunID(ev)
	}
	return dl, nil
}

// Replay republishes dead letter seq on its original subject, for the
// consumer that gave up to try again (handlers are idempotent, so others
// that see it again do no harm; a run's history lists it once), and removes it
// from the dead-letter stream. Replaying the same letter twice publishes it
// once.
func Replay(ctx context.Context, js jetstream.JetStream, seq uint64) (DeadLetter, error) {
	dl, err := DeadLetterAt(ctx, js, seq)
	if err != nil {
		return dl, err
	}
	if dl.Subject == "" {
		return dl, fmt.Errorf("dead letter #%d does not say where it was published", seq)
	}
	if !events.IsContractSubject(dl.Subject) {
		return dl, fmt.Errorf("dead letter #%d was published on %s, which is not digestline.<event>.<run id>: %s takes nothing there (republish its event with Bus.Publish instead)", seq, dl.Subject, events.StreamName)
	}
	msg := nats.NewMsg(dl.Subject)
	msg.Data = dl.Body
	msg.Header.Set("Content-Type", events.ContentType)
	msg.Header.Set(HeaderReplayOf, strconv.FormatUint(seq, 10))
	if _, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(fmt.Sprintf("replay-%d", seq)), jetstream.WithExpectStream(events.StreamName)); err != nil {
		return dl, fmt.Errorf("replay dead letter #%d: %w", seq, err)
	}
	s, err := js.Stream(ctx, events.DeadLetterStream)
	if err != nil {
		return dl, err
	}
	if err := s.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return dl, fmt.Errorf("replayed dead letter #%d, but could not remove it: %w", seq, err)
	}
	return dl, nil
}
