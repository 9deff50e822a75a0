package bus

import (
	"context"
	"encoding/json"

	"github.com/digestline/digestline/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// busMetrics count what the consumers do with events.
type busMetrics struct {
	handled      metric.Int64Counter // every settled delivery, by consumer, event and outcome
	redeliveries metric.Int64Counter // deliveries after the first
	failures     metric.Int64Counter // failure and rejection events published, by event and class
}

// Outcomes of a delivery, as the digestline.events.handled counter labels them.
const (
	OutcomeAck        = "ack"
	OutcomeRetry      = "retry"
	OutcomeDeadLetter = "dead-letter"
)

// WithMeterProvider sets where the bus's metrics go (default: the global one).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(b *Bus) {
		m := mp.Meter("github.com/digestline/digestline/pkg/bus")
		// Instrument errors only say a name is malformed; ours are fixed.
		b.metrics.handled, _ = m.Int64Counter("digestline.events.handled",
			metric.WithDescription("Deliveries settled by a consumer: acked, retried or dead-lettered"), metric.WithUnit("{event}"))
		b.metrics.redeliveries, _ = m.Int64Counter("digestline.events.redeliveries",
			metric.WithDescription("Deliveries of an event after its first"), metric.WithUnit("{event}"))
		b.metrics.failures, _ = m.Int64Counter("digestline.failures",
			metric.WithDescription("Runs ended by a failure (by class) or a rejection (by gate)"), metric.WithUnit("{run}"))
	}
}

func (m busMetrics) settled(ctx context.Context, consumer, subject, outcome string, delivery uint64) {
	attrs := metric.WithAttributes(attribute.String("consumer", consumer), attribute.String("subject", subject))
	m.handled.Add(ctx, 1, attrs, metric.WithAttributes(attribute.String("outcome", outcome)))
	if delivery > 1 {
		m.redeliveries.Add(ctx, 1, attrs)
	}
}

// failureClass reads the class a failure event carries (the gate, for a
// rejection), for the failures counter.
func failureClass(name events.Name, data []byte) (string, bool) {
	switch name {
	case events.BuildFailed, events.PushFailed, events.VerifyFailed:
		var f struct {
			Class string `json:"class"`
		}
		return f.Class, json.Unmarshal(data, &f) == nil
	case events.PromotionRejected:
		var r struct {
			Gate string `json:"gate"`
		}
		return r.Gate, json.Unmarshal(data, &r) == nil
	}
	return "", false
}

// RegisterDLQDepth reports the number of dead letters as the
// digestline.dlq.depth gauge, read when metrics are collected.
func RegisterDLQDepth(mp metric.MeterProvider, js jetstream.JetStream) error {
	m := mp.Meter("github.com/digestline/digestline/pkg/bus")
	_, err := m.Int64ObservableGauge("digestline.dlq.depth", metric.WithDescription("Events in the dead-letter stream"), metric.WithUnit("{event}"),
		metric.WithInt64Callback(func(ctx context.Context, o metric.Int64Observer) error {
			s, err := js.Stream(ctx, events.DeadLetterStream)
			if err != nil {
				return err
			}
			info, err := s.Info(ctx)
			if err != nil {
				return err
			}
			o.Observe(int64(info.State.Msgs))
			return nil
		}))
	return err
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
