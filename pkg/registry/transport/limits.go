package transport

import (
	"context"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/time/rate"
)

// Limits are a client's per-registry bounds and their state: a request
// rate and a number of uploads at once per registry host. The zero value
// bounds nothing; set the bounds before the first request.
type Limits struct {
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

func (l *Limits) of(host string) *hostLimits {
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
func (l *Limits) waitTurn(ctx context.Context, host string) error {
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

// SetRate bounds the requests to each registry to perSecond, in bursts
// of burst (0: no bound).
func (l *Limits) SetRate(perSecond float64, burst int) {
	l.perSecond, l.burst = perSecond, max(burst, 1)
}

// SetUploads bounds the uploads at once to each registry (0: no bound).
func (l *Limits) SetUploads(n int) { l.uploads = max(n, 0) }

// Instrument counts the requests held back, and the time they waited, in m.
func (l *Limits) Instrument(m metric.Meter) {
	// Instrument errors only say a name is malformed; ours are fixed.
	l.delayed, _ = m.Int64Counter("digestline.registry.throttled",
		metric.WithDescription("Requests held back by the client's rate limit for their registry"), metric.WithUnit("{request}"))
	l.waited, _ = m.Float64Counter("digestline.registry.throttled.wait",
		metric.WithDescription("Time requests waited for the client's rate limit for their registry"), metric.WithUnit("s"))
}

// UploadSlot takes one of host's upload slots; release gives it back.
func (l *Limits) UploadSlot(ctx context.Context, host string) (release func(), err error) {
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
	limits *Limits
}

func (t limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.limits.waitTurn(req.Context(), req.URL.Host); err != nil {
		return nil, err
	}
	return t.next.RoundTrip(req)
}
