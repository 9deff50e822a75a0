package events

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/digestline/digestline/pkg/failure"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// settleTimeout bounds an ack, a nak or a dead-letter: they run on a
// context of their own, as the handler's may have run out.
const settleTimeout = 5 * time.Second

// settleContext is ctx's values (the span) without its end, bounded.
func settleContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
}

// Metrics counts every settled delivery by consumer, subject and outcome,
// and every redelivery.
func Metrics(b *Bus) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, msg Message) error {
			err := next(ctx, msg)
			b.metrics.settled(ctx, msg.Consumer, msg.Subject, msg.Outcome(), msg.Delivery)
			return err
		}
	}
}

// Acknowledge acks a delivery whose handler succeeded, and hands back at
// once (nak) one that failed and that nothing inside settled.
func Acknowledge(log *slog.Logger) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m Message) error {
			err := next(ctx, m)
			sctx, cancel := settleContext(ctx)
			defer cancel()
			if err == nil {
				if aerr := m.settle(OutcomeAck, func() error { return m.d.msg.DoubleAck(sctx) }); aerr != nil {
					log.Warn("ack failed; the event will be redelivered", "consumer", m.Consumer, "subject", m.Subject, "error", aerr)
				}
				return nil
			}
			_ = m.settle(OutcomeRetry, m.d.msg.Nak)
			return err
		}
	}
}

// DeadLettering stores an event that will never be handled in the dead-letter
// stream, with why, and terminates it: one whose handler failed for good
// (Permanent, ErrInvalid) or on its last delivery, and one delivered more
// often than maxDeliver (its handler crashed or timed out each time), which
// is not handed to the handler again. A failure because the service is
// shutting down is not the event's: it is left to be handed back.
func DeadLettering(b *Bus, maxDeliver int) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m Message) error {
			err := error(nil)
			if m.Delivery > uint64(maxDeliver) {
				err = Permanent(fmt.Errorf("gave up after %d deliveries (the handler crashed or timed out each time)", m.Delivery-1))
			} else {
				err = next(ctx, m)
			}
			if err == nil || shuttingDown(ctx) || !(IsPermanent(err) || m.LastTry) {
				return err
			}
			sctx, cancel := settleContext(ctx)
			defer cancel()
			if derr := m.settle(OutcomeDeadLetter, func() error { return b.deadLetter(sctx, m, err.Error()) }); derr != nil {
				b.log.Error("dead-letter failed; the event will be redelivered", "consumer", m.Consumer, "error", derr)
				_ = m.d.msg.Nak()
			}
			return err
		}
	}
}

// Retry hands a delivery whose handler failed back for redelivery after
// backoff(delivery) — a failure that may pass, before the last delivery —
// or at once when the service is shutting down.
func Retry(backoff func(delivery uint64) time.Duration, log *slog.Logger) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m Message) error {
			err := next(ctx, m)
			switch {
			case err == nil:
			case shuttingDown(ctx):
				_ = m.settle(OutcomeRetry, m.d.msg.Nak)
			case !IsPermanent(err) && !m.LastTry:
				delay := backoff(m.Delivery)
				log.Warn("handler failed; will retry", "consumer", m.Consumer, "subject", m.Subject,
					"delivery", m.Delivery, "retry_in", delay, "error", err)
				_ = m.settle(OutcomeRetry, func() error { return m.d.msg.NakWithDelay(delay) })
			}
			return err
		}
	}
}

// Validate parses the delivery into its event (Message.Event and Name):
// a valid CloudEvent of the contract, which is the event its subject names.
// An invalid one fails with ErrInvalid, and is never handed on.
func Validate() Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m Message) error {
			ev, name, err := ParseMsg(m.d.msg.Subject(), m.d.msg.Data())
			if err != nil {
				return err
			}
			m.Event, m.Name = ev, name
			return next(ctx, m)
		}
	}
}

// Trace continues the event's trace (its distributed-tracing extension)
// with a consumer span around the handler, named "<consumer> process
// <event>", that records the handler's error.
func Trace(tracer trace.Tracer, prop propagation.TextMapPropagator) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m Message) error {
			ctx = prop.Extract(ctx, extensionCarrier{&m.Event})
			ctx, span := tracer.Start(ctx, m.Consumer+" process "+string(m.Name),
				trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithAttributes(
					attribute.String("messaging.system", "nats"),
					attribute.String("messaging.operation.type", "process"),
					attribute.String("messaging.destination.name", m.Subject),
					attribute.String("messaging.consumer.group.name", m.Consumer),
					attribute.String("messaging.message.id", m.Event.ID()),
					attribute.Int64("messaging.nats.stream.sequence", int64(m.Sequence)),
					attribute.Int64("messaging.nats.delivery.count", int64(m.Delivery)),
					attribute.String("digestline.run_id", RunID(m.Event)),
				))
			defer span.End()
			err := next(ctx, m)
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			return err
		}
	}
}

// Recover turns a handler's panic into a Permanent error, so one bad event
// cannot take the service down.
func Recover(log *slog.Logger) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m Message) (err error) {
			defer func() {
				if r := recover(); r != nil {
					log.Error("handler panicked", "consumer", m.Consumer, "subject", m.Subject, "panic", r, "stack", string(debug.Stack()))
					err = Permanent(fmt.Errorf("handler panicked: %v", r))
				}
			}()
			return next(ctx, m)
		}
	}
}

// KeepAlive tells JetStream every interval that the delivery is still being
// worked on (an in-progress ack), so a handler may take longer than the
// consumer's AckWait while a crashed one's event still comes back soon.
func KeepAlive(interval time.Duration) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m Message) error {
			done := make(chan struct{})
			ticked := make(chan struct{})
			go func() {
				defer close(ticked)
				t := time.NewTicker(interval)
				defer t.Stop()
				for {
					select {
					case <-done:
						return
					case <-t.C:
						_ = m.d.msg.InProgress()
					}
				}
			}()
			defer func() { close(done); <-ticked }()
			return next(ctx, m)
		}
	}
}

// Timeout bounds each handler by timeout(event name): past it, the
// handler's context is cancelled with a *failure.DeadlineError as its
// cause (failure.CancelAfter: the bus's own requests keep their short
// timeouts), so
// what it waited for fails as a transport failure naming the bound, and the
// handler reports it as the run's failure (Bus.Fail) instead of holding the
// event forever.
func Timeout(timeout func(Name) time.Duration) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m Message) error {
			ctx, cancel := failure.CancelAfter(ctx, &failure.DeadlineError{
				What: fmt.Sprintf("the %s's handling of %s", m.Consumer, m.Name), Timeout: timeout(m.Name), Setting: "DIGESTLINE_HANDLER_TIMEOUT",
			})
			defer cancel()
			return next(ctx, m)
		}
	}
}
