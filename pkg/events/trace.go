package events

import (
	cloudevents "github.com/cloudevents/sdk-go/v2"
	"go.opentelemetry.io/otel/propagation"
)

// The distributed-tracing extension's attribute names.
const (
	ExtTraceParent = "traceparent"
	ExtTraceState  = "tracestate"
)

// extensionCarrier lets an OpenTelemetry propagator read and write the
// CloudEvents distributed-tracing extension, so the trace travels inside the
// event whatever the transport.
type extensionCarrier struct{ ev *cloudevents.Event }

var _ propagation.TextMapCarrier = extensionCarrier{}

func (c extensionCarrier) Get(key string) string {
	s, _ := c.ev.Extensions()[key].(string)
	return s
}

func (c extensionCarrier) Set(key, value string) {
	if key == ExtTraceParent || key == ExtTraceState {
		c.ev.SetExtension(key, value)
	}
}

func (c extensionCarrier) Keys() []string { return []string{ExtTraceParent, ExtTraceState} }
