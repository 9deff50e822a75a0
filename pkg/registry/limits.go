package registry

import (
	"context"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/time/rate"
)

// WithRateLimit bounds the requests sent to each registry to perSecond
// (bursts of burst), so many pushes at once stay under a registry's own
// limits (Docker Hub's, for one) instead of tripping them; 0 (the default)
// is no bound. Time spent waiting is counted in the
// digestline.registry.throttled.wait metric.
func WithRateLimit(perSecond float64, burst int) Option {
	return func(c *Client) { c.limits.perSecond, c.limits.burst = perSecond, max(burst, 1) }
}

// WithUploadLimit bounds the blob uploads running at once to each registry,
// across all of the client's pushes; 0 (the default) is no bound.
func WithUploadLimit(n int) Option { return func(c *Client) { c.limits.uploads = max(n, 0) } }

// limits are the client's per-registry bounds and their state.
type limits struct {
	perSecond float64
	burst     int
	uploads   int
	hosts     sync.Map // registry host → *hostLimits
	waited    metric.Float64Counter
	delayed   metric.Int64Counter
}

type hostLimits struct {
	rate    *rate.Limiter // nil: no bound
	uploads chan struct{} // nil: no bound
}

func (l *limits) of(host string) *hostLimits {
	if h, ok := l.hosts.Load(host); ok {
		return h.(*hostLimits)
	}
	h := &hostLimits{}
	if l.perSecond > 0 {
		h.rate = rate.NewLimiter(rate.Limit(l.perSecond), l.burst)
	}
	if l.uploads > 0 {
		h.uploads = make(chan struct{}, l.uploads)
	}
	actual, _ := l.hosts.LoadOrStore(host, h)
	return actual.(*hostLimits)
}

// waitTurn waits until host may be sent another request, and counts the
// wait.
func (l *limits) waitTurn(ctx context.Context, host string) error {
	h := l.of(host)
	if h.rate == nil {
		return nil
	}
	start := time.Now()
	if err := h.rate.Wait(ctx); err != nil {
		return err
	}
	if waited := time.Since(start); waited > time.Millisecond {
		attrs := metric.WithAttributes(attribute.String("registry", host))
		l.delayed.Add(ctx, 1, attrs)
		l.waited.Add(ctx, waited.Seconds(), attrs)
	}
	return nil
}

// uploadSlot takes one of host's upload slots; release gives it back.
func (l *limits) uploadSlot(ctx context.Context, host string) (release func(), err error) {
	h := l.of(host)
	if h.uploads == nil {
		return func() {}, nil
	}
	select {
	case h.uploads <- struct{}{}:
		return func() { <-h.uploads }, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// limitedTransport sends each request when its registry's rate allows.
type limitedTransport struct {
	next   http.RoundTripper
	limits *limits
}

func (t limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.limits.waitTurn(req.Context(), req.URL.Host); err != nil {
		return nil, err
	}
	return t.next.RoundTrip(req)
}
