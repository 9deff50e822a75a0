package events

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Message is one delivery of a valid event to a handler.
type Message struct {
	Event cloudevents.Event
	Name  Name
	// Sequence is the event's position in the stream: its order in the run.
	Sequence uint64
	// Delivery counts deliveries of this event to this consumer, from 1.
	Delivery uint64
	// LastTry is set on the last delivery before a failing event is
	// dead-lettered: a handler that would retry a transient failure should
	// report it as the run's failure instead, so the run ends visibly.
	LastTry bool
}

// Handler processes one event. It returns nil once its effects and the events
// it emits are durable; the runtime then acks. An error is retried with
// backoff, unless it wraps ErrInvalid or is Permanent, in which case the event
// is dead-lettered at once. Handlers must be idempotent: an event may arrive
// more than once.
type Handler func(ctx context.Context, m Message) error

// ConsumerSpec names a durable pull consumer. Instances of a service that use
// the same Durable share its work.
type ConsumerSpec struct {
	Durable string
	Events  []Name // empty means every event
	// MaxDeliver bounds deliveries before an event is dead-lettered (default 5).
	MaxDeliver int
	// Concurrency bounds the events this consumer handles at once (default 8).
	Concurrency int
	// AckWait is how long a delivery may go unacknowledged before it is
	// redelivered (default 10s). Handlers that take longer are kept alive with
	// in-progress acks at half this interval, so it can stay short: a crashed
	// worker's event, or one lost in flight at shutdown, comes back quickly.
	AckWait time.Duration
}

func (s ConsumerSpec) withDefaults() ConsumerSpec {
	if s.MaxDeliver <= 0 {
		s.MaxDeliver = 5
	}
	if s.AckWait <= 0 {
		s.AckWait = 10 * time.Second
	}
	if s.Concurrency <= 0 {
		s.Concurrency = 8
	}
	return s
}

// Consume runs h for every event the durable consumer receives until ctx is
// cancelled; an event in flight then finishes before Consume returns.
func (b *Bus) Consume(ctx context.Context, spec ConsumerSpec, h Handler) error {
	if spec.AckWait <= 0 {
		spec.AckWait = b.ackWait
	}
	spec = spec.withDefaults()
	cfg := jetstream.ConsumerConfig{
		Durable:   spec.Durable,
		AckPolicy: jetstream.AckExplicitPolicy,
		AckWait:   spec.AckWait,
		// Unbounded on the server: the runtime counts deliveries itself and
		// dead-letters with a reason, even for an event that crashed the process.
		MaxDeliver: -1,
	}
	for _, n := range spec.Events {
		cfg.FilterSubjects = append(cfg.FilterSubjects, n.Filter())
	}
	if len(cfg.FilterSubjects) == 0 {
		cfg.FilterSubject = SubjectAll
	}
	cons, err := b.js.CreateOrUpdateConsumer(ctx, StreamName, cfg)
	if err != nil {
		return fmt.Errorf("consumer %s: %w", spec.Durable, err)
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(2 * spec.Concurrency))
	if err != nil {
		return fmt.Errorf("consumer %s: %w", spec.Durable, err)
	}
	// On cancel, stop pulling; messages already pulled into the buffer are
	// handed back (nak) so they are redelivered at once — to another
	// instance, or to this one after a restart — instead of after AckWait.
	stop := context.AfterFunc(ctx, iter.Drain)
	defer stop()
	defer iter.Stop()
	// Up to Concurrency events are handled at once (events of one run come
	// one after another anyway: each is the answer to the one before).
	// Consume owns those goroutines and returns only when they are done.
	slots := make(chan struct{}, spec.Concurrency)
	var inflight sync.WaitGroup
	defer inflight.Wait()
	for {
		msg, err := iter.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return nil
		}
		if err != nil {
			b.log.Warn("consumer pull failed; retrying", "consumer", spec.Durable, "error", err)
			continue
		}
		if ctx.Err() != nil {
			_ = msg.Nak()
			continue
		}
		slots <- struct{}{}
		inflight.Add(1)
		go func() {
			defer func() { <-slots; inflight.Done() }()
			// In-flight work finishes even when ctx is cancelled: a
			// half-done handler would only be redelivered.
			b.handle(context.WithoutCancel(ctx), spec, msg, h)
		}()
	}
}

func (b *Bus) handle(ctx context.Context, spec ConsumerSpec, msg jetstream.Msg, h Handler) {
	meta, err := msg.Metadata()
	if err != nil {
		b.log.Error("message without metadata", "consumer", spec.Durable, "error", err)
		_ = msg.Term()
		return
	}
	ev, name, err := ParseMsg(msg.Subject(), msg.Data())
	if err != nil {
		b.settle(ctx, spec, msg, err)
		return
	}
	ctx = b.ExtractContext(ctx, ev)
	ctx, span := b.tracer.Start(ctx, spec.Durable+" process "+string(name),
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", msg.Subject()),
			attribute.String("messaging.consumer.group.name", spec.Durable),
			attribute.String("messaging.message.id", ev.ID()),
			attribute.Int64("messaging.nats.stream.sequence", int64(meta.Sequence.Stream)),
			attribute.Int64("messaging.nats.delivery.count", int64(meta.NumDelivered)),
			attribute.String("digestline.run_id", RunID(ev)),
		))
	defer span.End()

	if meta.NumDelivered > uint64(spec.MaxDeliver) {
		err = Permanent(fmt.Errorf("gave up after %d deliveries (the handler crashed or timed out each time)", meta.NumDelivered-1))
	} else {
		err = b.run(ctx, spec, msg, h, Message{Event: ev, Name: name, Sequence: meta.Sequence.Stream, Delivery: meta.NumDelivered,
			LastTry: meta.NumDelivered >= uint64(spec.MaxDeliver)})
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	b.settle(ctx, spec, msg, err)
}

// run calls h, keeping the delivery alive while it works and turning a panic
// into an error so one bad event cannot take the service down.
func (b *Bus) run(ctx context.Context, spec ConsumerSpec, msg jetstream.Msg, h Handler, m Message) (err error) {
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		t := time.NewTicker(spec.AckWait / 2)
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	defer func() {
		if r := recover(); r != nil {
			b.log.Error("handler panicked", "consumer", spec.Durable, "panic", r, "stack", string(debug.Stack()))
			err = Permanent(fmt.Errorf("handler panicked: %v", r))
		}
	}()
	return h(hctx, m)
}

// settle acks, naks or dead-letters a delivery according to err.
func (b *Bus) settle(ctx context.Context, spec ConsumerSpec, msg jetstream.Msg, err error) {
	meta, _ := msg.Metadata()
	outcome := OutcomeRetry
	defer func() { b.metrics.settled(ctx, spec.Durable, msg.Subject(), outcome, meta.NumDelivered) }()
	switch {
	case err == nil:
		outcome = OutcomeAck
		if aerr := msg.DoubleAck(ctx); aerr != nil {
			b.log.Warn("ack failed; the event will be redelivered", "consumer", spec.Durable, "error", aerr)
		}
	case isPermanent(err) || meta.NumDelivered >= uint64(spec.MaxDeliver):
		outcome = OutcomeDeadLetter
		if derr := b.deadLetter(ctx, spec.Durable, msg, err.Error()); derr != nil {
			b.log.Error("dead-letter failed; the event will be redelivered", "consumer", spec.Durable, "error", derr)
			_ = msg.Nak()
		}
	default:
		delay := b.backoff(meta.NumDelivered)
		b.log.Warn("handler failed; will retry", "consumer", spec.Durable, "subject", msg.Subject(),
			"delivery", meta.NumDelivered, "retry_in", delay, "error", err)
		_ = msg.NakWithDelay(delay)
	}
}
