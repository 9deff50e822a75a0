package registry

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Client opens repositories on OCI registries and pushes artifact graphs to
// them. It is safe for concurrent use.
type Client struct {
	keychain  authn.Keychain
	auth      authn.Authenticator
	base      http.RoundTripper
	tracer    trace.Tracer
	metrics   pushMetrics
	jobs      int
	retries   int
	retryBase time.Duration
	insecure  map[string]bool // registry hosts spoken to over plain HTTP
	authMu    sync.Mutex
	auths     map[string]authEntry // authenticated transports by registry and scopes
	// Blobs larger than chunkOver are uploaded in chunks of chunkSize (or the
	// registry's OCI-Chunk-Min-Length, if larger), resumable after a failure.
	chunkOver, chunkSize int64
	chunks               sync.Map      // registry host → Support: whether it takes chunked uploads
	chunkProbes          sync.Map      // registry host → true while a push probes its chunked uploads
	singlePost           sync.Map      // registry host → Support: whether it takes a small blob in one POST
	limits               *limits       // per-registry request rate and concurrent uploads
	timeout              time.Duration // how long a registry may stay silent
}

// Option configures a Client.
type Option func(*Client)

// WithAuth uses one authenticator for every registry (overrides the keychain).
func WithAuth(a authn.Authenticator) Option { return func(c *Client) { c.auth = a } }

// WithKeychain resolves credentials per registry (default: docker config.json
// and credential helpers, via authn.DefaultKeychain).
func WithKeychain(k authn.Keychain) Option { return func(c *Client) { c.keychain = k } }

// WithTransport sets the HTTP transport under auth (default: a clone of
// http.DefaultTransport keeping 64 idle connections per registry).
func WithTransport(rt http.RoundTripper) Option { return func(c *Client) { c.base = rt } }

// WithTracerProvider sets where stage spans go (default: the global provider).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *Client) { c.tracer = tp.Tracer("github.com/digestline/digestline/pkg/registry") }
}

// WithMeterProvider sets where push metrics go (default: the global provider).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *Client) {
		m := mp.Meter("github.com/digestline/digestline/pkg/registry")
		// Instrument errors only say a name is malformed; ours are fixed.
		c.metrics.stageDuration, _ = m.Float64Histogram("digestline.push.stage.duration",
			metric.WithDescription("How long each push stage took, retries included"), metric.WithUnit("s"))
		c.metrics.bytesPushed, _ = m.Int64Counter("digestline.push.bytes",
			metric.WithDescription("Blob bytes uploaded to registries"), metric.WithUnit("By"))
		c.limits.delayed, _ = m.Int64Counter("digestline.registry.throttled",
			metric.WithDescription("Requests held back by the client's rate limit for their registry"), metric.WithUnit("{request}"))
		c.limits.waited, _ = m.Float64Counter("digestline.registry.throttled.wait",
			metric.WithDescription("Time requests waited for the client's rate limit for their registry"), metric.WithUnit("s"))
	}
}

// pushMetrics are the push's instruments.
type pushMetrics struct {
	stageDuration metric.Float64Histogram
	bytesPushed   metric.Int64Counter
}

// WithInsecure speaks plain HTTP to these registry hosts (host[:port]), as
// to localhost, e.g. a registry inside a compose network. Nothing else is
// relaxed: TLS stays on for every other registry.
func WithInsecure(hosts ...string) Option {
	return func(c *Client) {
		if c.insecure == nil {
			c.insecure = map[string]bool{}
		}
		for _, h := range hosts {
			c.insecure[h] = true
		}
	}
}

// WithJobs bounds concurrent blob requests (default 4).
func WithJobs(n int) Option { return func(c *Client) { c.jobs = max(n, 1) } }

// WithRetries sets how often a transient failure is retried (default 4) and
// the first backoff delay (default 200ms, doubling with jitter).
func WithRetries(n int, base time.Duration) Option {
	return func(c *Client) { c.retries, c.retryBase = max(n, 0), base }
}

// WithChunking uploads blobs larger than over in chunks of size to every
// registry, without asking it first: a failed chunk resumes from what the
// registry received instead of re-sending the blob. Without it (the
// default), a blob goes up as one streamed upload, which every registry
// takes, unless it is over 64 MiB and a probe found its registry takes
// chunks (see chunking). Either way, a registry that refuses a chunk gets
// a streamed upload in the same push, and none is chunked to it again.
func WithChunking(over, size int64) Option {
	return func(c *Client) { c.chunkOver, c.chunkSize = over, max(size, 1) }
}

// New returns a Client.
func New(opts ...Option) *Client {
	// Keep enough idle connections for every concurrent blob request of
	// several pushes (the default's 2 per host means re-dialing under load).
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxIdleConnsPerHost = 64
	c := &Client{keychain: authn.DefaultKeychain, base: base, jobs: 4, retries: 4, retryBase: 200 * time.Millisecond,
		timeout: DefaultTimeout, limits: &limits{}}
	WithTracerProvider(otel.GetTracerProvider())(c)
	WithMeterProvider(otel.GetMeterProvider())(c)
	for _, o := range opts {
		o(c)
	}
	if c.base == http.RoundTripper(base) {
		// A registry that accepts the connection and never answers, or
		// stops mid-body, fails the request instead of holding it forever.
		base.ResponseHeaderTimeout = c.timeout
		base.DialContext = idleDialer(c.timeout)
	}
	// Every registry request is an HTTP client span (OpenTelemetry's HTTP
	// semantic conventions) under its stage's span.
	c.base = countingTransport{inner: tracedTransport{next: limitedTransport{next: c.base, limits: c.limits}, tracer: c.tracer}}
	c.auths = map[string]authEntry{}
	return c
}

// counterKey carries a push's request counter in its context.
type counterKey struct{}

// countRequests returns ctx in which every request reaching the wire adds
// one to n, those the auth transport makes for a token included.
func countRequests(ctx context.Context, n *atomic.Int64) context.Context {
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

// bigBlob is the size above which a blob goes up in chunks to a registry
// that takes them (in chunks of bigChunk, or the registry's
// OCI-Chunk-Min-Length if larger): a failed chunk resumes from what the
// registry received instead of sending the blob again.
const bigBlob, bigChunk = 64 << 20, 16 << 20

// chunking is how a blob of blobSize goes up to repo's registry: in chunks
// of size when larger than over, or streamed whole when over is 0. Never in
// chunks to a registry that refused one; as WithChunking says when it was
// given; otherwise in chunks only to a registry known to take them. The
// first big blob for a registry the client knows nothing of has its
// registry probed for chunked uploads (blobs that come while the probe
// runs go up streamed).
func (c *Client) chunking(ctx context.Context, repo *Repo, blobSize int64) (over, size int64) {
	host := repo.name.RegistryStr()
	known, _ := c.chunks.Load(host)
	if known == No {
		return 0, 0
	}
	if c.chunkOver > 0 {
		return c.chunkOver, c.chunkSize
	}
	if known == nil && blobSize > bigBlob {
		if _, probing := c.chunkProbes.LoadOrStore(host, true); !probing {
			found, _ := repo.probeChunks(ctx)
			c.learnChunks(host, found)
			c.chunkProbes.Delete(host) // learnt, or to be asked again by a later blob
			known, _ = c.chunks.Load(host)
		}
	}
	if known == Yes {
		return bigBlob, bigChunk
	}
	return 0, 0
}

// learnChunks keeps what a probe found of host's chunked uploads (nothing,
// when it could not tell).
func (c *Client) learnChunks(host string, found Capability) {
	if found.Support == Yes || found.Support == No {
		c.chunks.Store(host, found.Support)
	}
}
