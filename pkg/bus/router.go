package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/digestline/digestline/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// Message is one delivery of an event to a handler.
type Message struct {
	// Event and Name are the event, once Validate has parsed it.
	Event cloudevents.Event
	Name  events.Name
	// Subject is where the event was published; Consumer is the durable
	// consumer it was delivered to.
	Subject  string
	Consumer string
	// Sequence is the event's position in the stream: its order in the run.
	Sequence uint64
	// Delivery counts deliveries of this event to this consumer, from 1.
	Delivery uint64
	// LastTry is set on the last delivery before a failing event is
	// dead-lettered: a handler that would retry a transient failure should
	// report it as the run's failure instead (Bus.Fail does), so the run
	// ends visibly.
	LastTry bool

	d *delivery
}

// NewMessage is a delivery of msg to consumer, not yet validated (the
// Validate middleware parses its event), whose last try is delivery
// maxDeliver.
func NewMessage(msg jetstream.Msg, consumer string, maxDeliver int) (Message, error) {
	meta, err := msg.Metadata()
	if err != nil {
		return Message{}, err
	}
	return Message{Subject: msg.Subject(), Consumer: consumer, Sequence: meta.Sequence.Stream, Delivery: meta.NumDelivered,
		LastTry: meta.NumDelivered >= uint64(maxDeliver), d: &delivery{msg: msg}}, nil
}

// delivery is what the middleware of one delivery share: the JetStream
// message, and how it was settled.
type delivery struct {
	msg jetstream.Msg
	mu  sync.Mutex
	// outcome is OutcomeAck, OutcomeRetry or OutcomeDeadLetter once the
	// delivery is settled, "" until then.
	outcome string
}

// settle records how the delivery ends, once: it runs fn (the ack, nak or
// dead-letter) only if nothing settled it before.
func (m Message) settle(outcome string, fn func() error) error {
	m.d.mu.Lock()
	defer m.d.mu.Unlock()
	if m.d.outcome != "" {
		return nil
	}
	m.d.outcome = outcome
	return fn()
}

// Outcome is how the delivery was settled ("" while it is not).
func (m Message) Outcome() string {
	m.d.mu.Lock()
	defer m.d.mu.Unlock()
	return m.d.outcome
}

// Handler processes one event. It returns nil once its effects and the events
// it emits are durable; the runtime then acks. An error is retried with
// backoff, unless it wraps ErrInvalid or is Permanent, in which case the event
// is dead-lettered at once. Handlers must be idempotent: an event may arrive
// more than once.
type Handler func(ctx context.Context, m Message) error

// Middleware wraps a handler with one concern (tracing, retry, a deadline…).
type Middleware func(Handler) Handler

// ConsumerSpec names a durable pull consumer. Instances of a service that use
// the same Durable share its work.
type ConsumerSpec struct {
	Durable string
	// MaxDeliver bounds deliveries before an event is dead-lettered (default 5).
	MaxDeliver int
	// Concurrency bounds the events this consumer handles at once (default 8).
	Concurrency int
	// AckWait is how long a delivery may go unacknowledged before it is
	// redelivered (default: the bus's, 10s). Handlers that take longer are
	// kept alive with in-progress acks at half this interval, so it can stay
	// short: a crashed worker's event, or one lost in flight at shutdown,
	// comes back quickly.
	AckWait time.Duration
	// Timeout bounds each handler (default: the bus's, 10 minutes); Handle
	// can set one per event.
	Timeout time.Duration
}

// Router hands the events of one durable consumer to one handler per event
// name, through the runtime's middleware (see Router.Run) and any the
// service adds with Use. A service reads as "these events, these handlers".
type Router struct {
	bus        *Bus
	spec       ConsumerSpec
	handlers   map[events.Name]Handler
	timeouts   map[events.Name]time.Duration
	middleware []Middleware
}

// Router returns a router for the durable consumer spec names.
func (b *Bus) Router(spec ConsumerSpec) *Router {
	spec.AckWait = firstPositive(spec.AckWait, b.ackWait, 10*time.Second)
	spec.Timeout = firstPositive(spec.Timeout, b.timeout, DefaultTimeout)
	if spec.MaxDeliver <= 0 {
		spec.MaxDeliver = 5
	}
	if spec.Concurrency <= 0 {
		spec.Concurrency = 8
	}
	return &Router{bus: b, spec: spec, handlers: map[events.Name]Handler{}, timeouts: map[events.Name]time.Duration{}}
}

// firstPositive returns the first positive duration.
func firstPositive(ds ...time.Duration) time.Duration {
	for _, d := range ds {
		if d > 0 {
			return d
		}
	}
	return 0
}

// DefaultTimeout bounds a handler unless the bus or the handler says otherwise.
const DefaultTimeout = 10 * time.Minute

// HandleOption configures one event's handling.
type HandleOption func(r *Router, n events.Name)

// WithTimeout bounds this event's handler (instead of the consumer's timeout).
func WithTimeout(d time.Duration) HandleOption {
	return func(r *Router, n events.Name) { r.timeouts[n] = d }
}

// Handle registers h for the event n: the consumer is filtered on the events
// that have a handler.
func (r *Router) Handle(n events.Name, h Handler, opts ...HandleOption) {
	r.handlers[n] = h
	for _, o := range opts {
		o(r, n)
	}
}

// Use adds middleware around every handler, inside the runtime's own.
func (r *Router) Use(mw ...Middleware) { r.middleware = append(r.middleware, mw...) }

// chain is one delivery's path, outermost first: metrics, ack, dead-letter,
// retry with backoff, validation, the consumer span, panic recovery,
// in-progress acks, the deadline, the service's own middleware, and the
// handler of the event's name.
func (r *Router) chain() Handler {
	b, spec := r.bus, r.spec
	mws := []Middleware{
		Metrics(b),
		Acknowledge(b.log),
		DeadLettering(b, spec.MaxDeliver),
		Retry(b.backoff, b.log),
		Validate(),
		Trace(b.tracer, b.prop),
		Recover(b.log),
		KeepAlive(spec.AckWait / 2),
		Timeout(func(n events.Name) time.Duration { return firstPositive(r.timeouts[n], spec.Timeout) }),
	}
	h := r.dispatch
	all := append(mws, r.middleware...)
	for i := len(all) - 1; i >= 0; i-- {
		h = all[i](h)
	}
	return h
}

// dispatch calls the handler of the event's name.
func (r *Router) dispatch(ctx context.Context, m Message) error {
	h, ok := r.handlers[m.Name]
	if !ok {
		return Permanent(fmt.Errorf("consumer %s has no handler for %s", r.spec.Durable, m.Name))
	}
	return h(ctx, m)
}

// ErrShutdown is the cause of a handler's context cancelled because the
// service stopped and the shutdown grace ran out: its event goes back to the
// stream for another instance, and is not the run's failure.
var ErrShutdown = errors.New("the service is shutting down")

// shuttingDown reports whether ctx was cancelled by the shutdown.
func shuttingDown(ctx context.Context) bool { return errors.Is(context.Cause(ctx), ErrShutdown) }

// Run consumes until ctx is cancelled. Then it stops pulling, hands back the
// events it had pulled but not started, and lets those in flight finish
// within the bus's shutdown grace (WithShutdownGrace); past it, their
// context is cancelled with ErrShutdown and they are handed back too. Run
// returns when no handler is running; before ctx ends only with an error
// (the NATS connection closed for good): a consumer that goes away while
// it runs is made again (pull.go).
func (r *Router) Run(ctx context.Context) error {
	spec := r.spec
	if len(r.handlers) == 0 {
		return fmt.Errorf("consumer %s: no handler registered", spec.Durable)
	}
	// On cancel, stop pulling; messages already pulled into the buffer are
	// handed back (nak) so they are redelivered at once — to another
	// instance, or to this one after a restart — instead of after AckWait.
	p, err := r.startPull(ctx)
	if errors.Is(err, errStopped) {
		return nil
	}
	if err != nil {
		return err
	}
	defer p.close()
	// In-flight work outlives ctx by the shutdown grace: a half-done
	// handler would only be redelivered.
	inflight, cancelInflight := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelInflight(nil)
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(r.bus.grace, func() { cancelInflight(ErrShutdown) })
		context.AfterFunc(inflight, func() { t.Stop() })
	})
	defer stopGrace()

	// Up to Concurrency events are handled at once (events of one run come
	// one after another anyway: each is the answer to the one before), by
	// as many workers: Run owns them and returns only when they are done.
	// Workers that live as long as the consumer keep the stacks their
	// handlers grew, instead of growing a new one for every event.
	h := r.chain()
	work := make(chan Message)
	var workers sync.WaitGroup
	defer workers.Wait()
	defer close(work)
	for range spec.Concurrency {
		workers.Go(func() {
			for m := range work {
				_ = h(inflight, m)
			}
		})
	}
	for {
		msg, err := p.next(ctx)
		if errors.Is(err, errStopped) {
			return nil
		}
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			_ = msg.Nak()
			continue
		}
		m, err := NewMessage(msg, spec.Durable, spec.MaxDeliver)
		if err != nil {
			r.bus.log.Error("message without metadata", "consumer", spec.Durable, "error", err)
			_ = msg.Term()
			continue
		}
		work <- m
	}
}

// consumerConfig is the durable consumer's: filtered on the events that
// have a handler.
func (r *Router) consumerConfig() jetstream.ConsumerConfig {
	cfg := jetstream.ConsumerConfig{
		Durable:   r.spec.Durable,
		AckPolicy: jetstream.AckExplicitPolicy,
		AckWait:   r.spec.AckWait,
		// Unbounded on the server: the runtime counts deliveries itself and
		// dead-letters with a reason, even for an event that crashed the process.
		MaxDeliver: -1,
	}
	for _, n := range events.Names() {
		if _, ok := r.handlers[n]; ok {
			cfg.FilterSubjects = append(cfg.FilterSubjects, n.Filter())
		}
	}
	return cfg
}

// Data adapts a handler of an event's decoded data: the event is decoded
// into T once, here, and data that does not decode is an invalid event.
// A service registers r.Handle(events.BuildCompleted, events.Data(p.push)).
func Data[T any](h func(ctx context.Context, m Message, data T) error) Handler {
	return func(ctx context.Context, m Message) error {
		data, err := events.Decode[T](m.Event)
		if err != nil {
			return err
		}
		return h(ctx, m, data)
	}
}
