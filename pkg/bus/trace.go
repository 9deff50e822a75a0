package bus

import (
	"context"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/digestline/digestline/pkg/events"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// extensionCarrier lets an OpenTelemetry propagator read and write the
// CloudEvents distributed-tracing extension, so the trace travels inside the
// event whatever the transport.
type extensionCarrier struct{ ev *cloudevents.Event }

var _ propagation.TextMapCarrier = extensionCarrier{}

func (c extensionCarrier) Get(key string) string {
	return events.Extension(*c.ev, key)
}

func (c extensionCarrier) Set(key, value string) {
	if key == events.ExtTraceParent || key == events.ExtTraceState {
		c.ev.SetExtension(key, value)
	}
}

func (c extensionCarrier) Keys() []string {
	return []string{events.ExtTraceParent, events.ExtTraceState}
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
					attribute.String("digestline.run_id", events.RunID(m.Event)),
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
