package transport

import (
	"context"
	"net/http"
	"sync/atomic"

	"go.opentelemetry.io/otel/trace"
)

// counterKey carries a request counter in a context.
type counterKey struct{}

// CountRequests returns ctx in which every request reaching the wire adds
// one to n, those the auth transport makes for a token included.
func CountRequests(ctx context.Context, n *atomic.Int64) context.Context {
	return context.WithValue(ctx, counterKey{}, n)
}

// countingTransport counts the requests whose context carries a counter.
type countingTransport struct{ inner http.RoundTripper }

func (t countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if n, ok := req.Context().Value(counterKey{}).(*atomic.Int64); ok {
		n.Add(1)
	}
	return t.inner.RoundTrip(req)
}

// New is the transport every registry request of a client goes through,
// under its auth: counted (CountRequests), an HTTP client span, and held
// to the registry's limits, then sent by base.
func New(base http.RoundTripper, tracer trace.Tracer, limits *Limits) http.RoundTripper {
	return countingTransport{inner: tracedTransport{next: limitedTransport{next: base, limits: limits}, tracer: tracer}}
}
