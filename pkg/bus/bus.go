package bus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Bus publishes and consumes pipeline events on JetStream on behalf of one
// service instance.
type Bus struct {
	js      jetstream.JetStream
	source  string
	tracer  trace.Tracer
	prop    propagation.TextMapPropagator
	log     *slog.Logger
	backoff func(delivery uint64) time.Duration
	ackWait time.Duration // consumers' default AckWait
	timeout time.Duration // handlers' default deadline
	grace   time.Duration // how long in-flight handlers may go on after the router stops
	metrics busMetrics
}

// Option configures a Bus.
type Option func(*Bus)

// WithTracerProvider sets where the bus's spans go (default: the global one).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(b *Bus) { b.tracer = tp.Tracer("github.com/digestline/digestline/pkg/bus") }
}

// WithLogger sets the bus's logger.
func WithLogger(l *slog.Logger) Option { return func(b *Bus) { b.log = l } }

// WithRedeliveryBackoff sets how long a transiently failed event waits before
// its next delivery.
func WithRedeliveryBackoff(f func(delivery uint64) time.Duration) Option {
	return func(b *Bus) { b.backoff = f }
}

// WithAckWait sets how long a delivery may go unacknowledged before it is
// redelivered, for consumers that do not set their own (default 10s): how
// soon the event a crashed worker held comes back.
func WithAckWait(d time.Duration) Option { return func(b *Bus) { b.ackWait = d } }

// WithHandlerTimeout bounds every handler that sets no timeout of its own
// (default DefaultTimeout): past it, the run fails instead of waiting.
func WithHandlerTimeout(d time.Duration) Option { return func(b *Bus) { b.timeout = d } }

// WithShutdownGrace sets how long handlers in flight when a router stops
// may go on (default 25s); then their context is cancelled with
// ErrShutdown and their events handed back for redelivery.
func WithShutdownGrace(d time.Duration) Option { return func(b *Bus) { b.grace = d } }

// NewBus returns a bus publishing as source (/digestline/<service>/<instance>).
func NewBus(js jetstream.JetStream, source string, opts ...Option) *Bus {
	b := &Bus{
		js:     js,
		source: source,
		prop:   propagation.TraceContext{},
		log:    slog.Default(),
		backoff: func(n uint64) time.Duration {
			return min(time.Duration(1<<min(n, 6))*250*time.Millisecond, 15*time.Second)
		},
		grace: 25 * time.Second,
	}
	WithTracerProvider(otel.GetTracerProvider())(b)
	WithMeterProvider(otel.GetMeterProvider())(b)
	for _, o := range opts {
		o(b)
	}
	return b
}

// Source is the CloudEvents source this bus publishes as.
func (b *Bus) Source() string { return b.source }

// JetStream is the underlying JetStream handle.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// Tracer is the tracer the bus starts spans with.
func (b *Bus) Tracer() trace.Tracer { return b.tracer }

// Publish stores ev durably in the stream. The trace context of ctx is
// injected into the event, its data is validated against the contract, and
// its id becomes the Nats-Msg-Id so that publishing it again stores nothing.
func (b *Bus) Publish(ctx context.Context, ev cloudevents.Event) error {
	name, msg, err := b.message(ctx, ev)
	if err != nil {
		return err
	}
	if _, err := b.js.PublishMsg(ctx, msg, publishOpts(ev)...); err != nil {
		return fmt.Errorf("publish %s %s: %w", name, ev.ID(), err)
	}
	b.count(ctx, name, ev)
	return nil
}

// message validates ev and turns it into the NATS message that stores it.
func (b *Bus) message(ctx context.Context, ev cloudevents.Event) (events.Name, *nats.Msg, error) {
	name, ok := events.NameOfType(ev.Type())
	if !ok {
		return "", nil, fmt.Errorf("publish: unknown event type %q", ev.Type())
	}
	run := events.RunID(ev)
	if err := events.CheckRunID(run); err != nil {
		return name, nil, fmt.Errorf("publish %s: %w: %v", name, events.ErrInvalid, err)
	}
	b.prop.Inject(ctx, extensionCarrier{&ev})
	if err := events.ValidateData(name, ev.Data()); err != nil {
		return name, nil, fmt.Errorf("publish %s: %w", name, err)
	}
	body, err := ev.MarshalJSON() // not json.Marshal: it would scan the output once more
	if err != nil {
		return name, nil, fmt.Errorf("publish %s: %w", name, err)
	}
	msg := nats.NewMsg(name.Subject(run))
	msg.Data = body
	msg.Header.Set("Content-Type", events.ContentType)
	return name, msg, nil
}

// publishTimeout bounds the wait for an asynchronous publish's
// acknowledgement, as jetstream's own default bounds a synchronous one.
const publishTimeout = 5 * time.Second

func publishOpts(ev cloudevents.Event) []jetstream.PublishOpt {
	return []jetstream.PublishOpt{jetstream.WithMsgID(ev.ID()), jetstream.WithExpectStream(events.StreamName)}
}

// count records a published failure event in the failures metric.
func (b *Bus) count(ctx context.Context, name events.Name, ev cloudevents.Event) {
	if class, ok := failureClass(name, ev.Data()); ok {
		b.metrics.failures.Add(ctx, 1, metric.WithAttributes(attribute.String("event", string(name)), attribute.String("class", class)))
	}
}

// Emitter publishes events without waiting for each one to be stored, in
// the order they are emitted: for events a handler reports along the way
// (push.stage), which need not hold it up one round trip each. Wait says
// whether all of them were stored; a handler calls it before it publishes
// its outcome, so nothing it reported can be lost after it acknowledges.
// An Emitter is not safe for concurrent use.
type Emitter struct {
	b       *Bus
	parent  cloudevents.Event
	pending []pendingEvent
	err     error
}

type pendingEvent struct {
	name events.Name
	ev   cloudevents.Event
	ack  jetstream.PubAckFuture
}

// Emitter returns an Emitter of events that answer parent.
func (b *Bus) Emitter(parent cloudevents.Event) *Emitter { return &Emitter{b: b, parent: parent} }

// Emit sends the event that answers the emitter's parent; an error to build
// or send it is kept for Wait.
func (e *Emitter) Emit(ctx context.Context, name events.Name, key string, data any) {
	if e.err != nil {
		return
	}
	ev, err := events.Follow(e.b.source, e.parent, name, key, data)
	if err != nil {
		e.err = err
		return
	}
	name, msg, err := e.b.message(ctx, ev)
	if err != nil {
		e.err = err
		return
	}
	ack, err := e.b.js.PublishMsgAsync(msg, publishOpts(ev)...)
	if err != nil {
		e.err = fmt.Errorf("publish %s %s: %w", name, ev.ID(), err)
		return
	}
	e.pending = append(e.pending, pendingEvent{name: name, ev: ev, ack: ack})
}

// Wait returns once every event emitted so far is stored, or with the
// first error: then the caller fails its delivery and emits them again
// on redelivery (their ids are the same, so nothing is stored twice).
func (e *Emitter) Wait(ctx context.Context) error {
	// As long as a publish waits for its acknowledgement: one lost in an
	// outage must fail the delivery, not hold it forever. The events were
	// sent already, so a handler whose own deadline passed still learns
	// whether they were stored.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
	defer cancel()
	for _, p := range e.pending {
		if e.err != nil {
			break
		}
		select {
		case <-p.ack.Ok():
			e.b.count(ctx, p.name, p.ev)
		case err := <-p.ack.Err():
			e.err = fmt.Errorf("publish %s %s: %w", p.name, p.ev.ID(), err)
		case <-ctx.Done():
			e.err = fmt.Errorf("publish %s %s: no acknowledgement from JetStream: %w", p.name, p.ev.ID(), ctx.Err())
		}
	}
	e.pending = e.pending[:0]
	return e.err
}

// Emit builds the event that answers parent (see Follow) and publishes it.
func (b *Bus) Emit(ctx context.Context, parent cloudevents.Event, name events.Name, key string, data any) (cloudevents.Event, error) {
	ev, err := events.Follow(b.source, parent, name, key, data)
	if err != nil {
		return ev, err
	}
	return ev, b.Publish(ctx, ev)
}

// Start builds a new event that begins a run and publishes it.
func (b *Bus) Start(ctx context.Context, name events.Name, runID, subject string, data any) (cloudevents.Event, error) {
	ev, err := events.NewEvent(b.source, name, runID, subject, data)
	if err != nil {
		return ev, err
	}
	return ev, b.Publish(ctx, ev)
}

// ExtractContext returns ctx carrying the trace context found in ev.
func (b *Bus) ExtractContext(ctx context.Context, ev cloudevents.Event) context.Context {
	return b.prop.Extract(ctx, extensionCarrier{&ev})
}

// deadLetter stores a message that will never be handled in the dead-letter
// stream, with why, and terminates it. The message id makes it idempotent.
func (b *Bus) deadLetter(ctx context.Context, m Message, reason string) error {
	msg, consumer := m.d.msg, m.Consumer
	dl := nats.NewMsg(events.DeadLetterPrefix + msg.Subject())
	dl.Data = msg.Data()
	for k, v := range msg.Headers() {
		dl.Header[k] = v
	}
	dl.Header.Del(jetstream.MsgIDHeader)
	dl.Header.Set(HeaderDLQReason, reason)
	dl.Header.Set(HeaderDLQConsumer, consumer)
	dl.Header.Set(HeaderDLQSubject, msg.Subject())
	dl.Header.Set(HeaderDLQDeliveries, fmt.Sprint(m.Delivery))
	dl.Header.Set(HeaderDLQSequence, fmt.Sprint(m.Sequence))
	id := fmt.Sprintf("dlq-%s-%d", consumer, m.Sequence)
	if _, err := b.js.PublishMsg(ctx, dl, jetstream.WithMsgID(id), jetstream.WithExpectStream(events.DeadLetterStream)); err != nil {
		return fmt.Errorf("dead-letter %s #%d: %w", msg.Subject(), m.Sequence, err)
	}
	b.log.Warn("event dead-lettered", "consumer", consumer, "subject", msg.Subject(),
		"sequence", m.Sequence, "deliveries", m.Delivery, "reason", reason)
	return msg.TermWithReason(reason)
}

// Headers of a dead-lettered message.
const (
	HeaderDLQReason     = "Digestline-Dlq-Reason"
	HeaderDLQConsumer   = "Digestline-Dlq-Consumer"
	HeaderDLQSubject    = "Digestline-Dlq-Subject"
	HeaderDLQDeliveries = "Digestline-Dlq-Deliveries"
	HeaderDLQSequence   = "Digestline-Dlq-Sequence"
)

// errPermanent marks a handler error that retrying cannot fix.
type errPermanent struct{ err error }

func (e errPermanent) Error() string { return e.err.Error() }
func (e errPermanent) Unwrap() error { return e.err }

// Permanent marks err as one that redelivery cannot fix: the runtime
// dead-letters the event at once instead of retrying it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return errPermanent{err}
}

// IsPermanent reports whether err is one redelivery cannot fix: Permanent,
// or an invalid event.
func IsPermanent(err error) bool {
	var p errPermanent
	return errors.As(err, &p) || errors.Is(err, events.ErrInvalid)
}

// Fail ends m's run with the failure event name (build.failed,
// push.failed, verify.failed): err made into the event's failure by
// NewFailure, for the target, digest and evidence f names (at f's Stage
// when err names none). When trying again may help instead — err is
// Temporary and this is not the event's last delivery — or the service is
// shutting down, it publishes nothing and returns err, so the event comes
// again. The failure is published even when the handler ran past its
// bound: that is what it reports.
func (b *Bus) Fail(ctx context.Context, m Message, name events.Name, err error, f events.Failure) error {
	if shuttingDown(ctx) {
		return err
	}
	e := failure.As(err)
	var d *failure.DeadlineError
	if errors.As(context.Cause(ctx), &d) && !errors.As(e, &d) {
		// The handler ran past its bound; what it waited for failed
		// without saying so.
		e.Err, e.Hint = fmt.Errorf("%w (%w)", e.Err, d), failure.As(d).Hint
	}
	if e.Temporary() && !m.LastTry {
		return err
	}
	stage := f.Stage
	f.Report = e.Report()
	f.Stage = cmp.Or(f.Stage, stage)
	b.log.Warn(fmt.Sprintf("%s: %s", name, f.Report), "run_id", events.RunID(m.Event), "class", f.Class, "stage", f.Stage)
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
	defer cancel()
	_, perr := b.Emit(pctx, m.Event, name, "", f)
	return perr
}
