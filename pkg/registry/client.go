package registry

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
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
	// Blobs larger than chunkOver are uploaded in chunks of chunkSize (or the
	// registry's OCI-Chunk-Min-Length, if larger), resumable after a failure.
	chunkOver, chunkSize int64
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

// WithChunking uploads blobs larger than over in chunks of size (defaults:
// over 64 MiB, chunks of 16 MiB): a failed chunk resumes from what the
// registry received instead of re-sending the blob.
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
		chunkOver: 64 << 20, chunkSize: 16 << 20}
	WithTracerProvider(otel.GetTracerProvider())(c)
	WithMeterProvider(otel.GetMeterProvider())(c)
	for _, o := range opts {
		o(c)
	}
	// Every registry request is an HTTP client span (OpenTelemetry's HTTP
	// semantic conventions) under its stage's span.
	c.base = tracedTransport{next: c.base, tracer: c.tracer}
	return c
}

// Open authenticates to repo's registry for pull (and push, when push is
// true) and, when there is a credential, proves it with one authenticated
// request, so wrong credentials fail here rather than at the first write. Every
// request made through the returned Repo, including this handshake, is counted.
func (c *Client) Open(ctx context.Context, repo name.Repository, push bool) (*Repo, error) {
	return c.open(ctx, repo, push, &countingTransport{inner: c.base})
}

// open authenticates for repo; extraPull names other repositories of the same
// registry the token must also be able to pull from (mount sources).
func (c *Client) open(ctx context.Context, repo name.Repository, push bool, counter *countingTransport, extraPull ...string) (*Repo, error) {
	if c.insecure[repo.RegistryStr()] {
		reg, err := name.NewRegistry(repo.RegistryStr(), name.Insecure)
		if err != nil {
			return nil, &Error{Class: ClassSchema, Err: err}
		}
		repo.Registry = reg
	}
	r := &Repo{name: repo}
	auth := c.auth
	if auth == nil {
		var err error
		if auth, err = c.keychain.Resolve(repo); err != nil {
			return nil, &Error{Class: ClassAuth, Err: fmt.Errorf("resolve credentials for %s: %w", repo.RegistryStr(), err),
				Hint: "check ~/.docker/config.json and its credential helpers"}
		}
	}
	scope := repo.Scope(transport.PullScope)
	if push {
		scope = repo.Scope(transport.PushScope)
	}
	scopes := []string{scope}
	for _, from := range extraPull {
		scopes = append(scopes, repo.Registry.Repo(from).Scope(transport.PullScope))
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, counter, scopes)
	if err != nil {
		return nil, classifyTransport(err, repo)
	}
	r.client = &http.Client{Transport: rt}
	if auth == authn.Anonymous {
		return r, nil // no credential to prove: the first real request will say if anonymous access is refused
	}
	resp, err := r.do(ctx, http.MethodGet, r.url("/v2/"), nil, nil)
	if err != nil {
		return nil, err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return nil, classifyResponse(resp, repo)
	}
	return r, nil
}

// countingTransport counts requests that reach the wire.
type countingTransport struct {
	inner http.RoundTripper
	n     atomic.Int64
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.inner.RoundTrip(req)
}
