package registry

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/digestline/digestline/pkg/failure"
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
	authMu    sync.Mutex
	auths     map[string]authEntry // authenticated transports by registry and scopes
	// Blobs larger than chunkOver are uploaded in chunks of chunkSize (or the
	// registry's OCI-Chunk-Min-Length, if larger), resumable after a failure.
	chunkOver, chunkSize int64
	noChunks             sync.Map      // registry host → true: it refused a chunked upload
	chunksOK             sync.Map      // registry host → true: a probe found it takes chunks
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

// WithChunking uploads blobs larger than over in chunks of size, to
// registries known to accept chunked uploads: a failed chunk resumes from
// what the registry received instead of re-sending the blob. Without it
// (the default) every blob goes up as one streamed upload, which every
// registry takes. A registry that refuses a chunk gets a streamed upload
// in the same push, and none is chunked to it again.
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

// Open authenticates to repo's registry for pull (and push, when push is
// true) and, when there is a credential, proves it with one authenticated
// request, so wrong credentials fail here rather than at the first write.
// The authenticated transport is kept for authTTL per registry and scopes,
// so opening the same repository again pings and fetches no token.
func (c *Client) Open(ctx context.Context, repo name.Repository, push bool) (*Repo, error) {
	return c.open(ctx, repo, push)
}

// authTTL bounds how long an authenticated transport is reused: a credential
// changed in the docker config or the environment is picked up after it.
// (Tokens themselves are refreshed by the transport whenever one expires.)
const authTTL = 5 * time.Minute

type authEntry struct {
	rt   http.RoundTripper
	made time.Time
}

// open authenticates for repo; extraPull names other repositories of the same
// registry the token must also be able to pull from (mount sources).
func (c *Client) open(ctx context.Context, repo name.Repository, push bool, extraPull ...string) (*Repo, error) {
	if c.insecure[repo.RegistryStr()] {
		reg, err := name.NewRegistry(repo.RegistryStr(), name.Insecure)
		if err != nil {
			return nil, &failure.Error{Class: failure.Schema, Err: err}
		}
		repo.Registry = reg
	}
	r := &Repo{name: repo, timeout: c.timeout}
	auth := c.auth
	if auth == nil {
		var err error
		if auth, err = c.keychain.Resolve(repo); err != nil {
			return nil, &failure.Error{Class: failure.Auth, Err: fmt.Errorf("resolve credentials for %s: %w", repo.RegistryStr(), err),
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
	key := repo.Registry.Scheme() + "://" + repo.RegistryStr() + " " + strings.Join(scopes, " ")
	c.authMu.Lock()
	e, ok := c.auths[key]
	c.authMu.Unlock()
	if ok && time.Since(e.made) < authTTL {
		r.client = &http.Client{Transport: e.rt}
		return r, nil
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, c.base, scopes)
	if err != nil {
		return nil, r.classifyTransport(ctx, err)
	}
	r.client = &http.Client{Transport: rt}
	if auth != authn.Anonymous { // anonymous: the first real request will say if it is refused
		resp, err := r.do(ctx, http.MethodGet, r.url("/v2/"), nil, nil)
		if err != nil {
			return nil, err
		}
		drain(resp)
		if resp.StatusCode != http.StatusOK {
			return nil, classifyResponse(resp, repo)
		}
	}
	c.authMu.Lock()
	c.auths[key] = authEntry{rt: rt, made: time.Now()}
	c.authMu.Unlock()
	return r, nil
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

// chunking is how blobs go up to host: in chunks of size when larger than
// over, or streamed whole when over is 0 — as WithChunking says, or as a
// probe found (64 MiB and 16 MiB for a registry that takes chunks), and
// never to one that refused a chunk.
func (c *Client) chunking(host string) (over, size int64) {
	if _, refused := c.noChunks.Load(host); refused {
		return 0, 0
	}
	if c.chunkOver > 0 {
		return c.chunkOver, c.chunkSize
	}
	if _, ok := c.chunksOK.Load(host); ok {
		return 64 << 20, 16 << 20
	}
	return 0, 0
}
