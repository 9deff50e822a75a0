package registry

import (
	"net/http"
	"time"

	"github.com/digestline/digestline/pkg/registry/transport"
	"github.com/google/go-containerregistry/pkg/authn"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

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
		c.limits.Instrument(m)
	}
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

// WithWait bounds how long a push stage goes on retrying a registry that
// fails or does not answer: no attempt starts that could end (by the
// client's timeout) more than d after the stage's first failed attempt
// began. A person at a terminal gets an answer in d; services, which
// nobody watches, leave it unset and keep to the retry count.
func WithWait(d time.Duration) Option { return func(c *Client) { c.wait = d } }

// WithWaitNotice makes the client tell notice of every request a registry
// leaves unanswered for a few seconds, and again every few seconds after.
func WithWaitNotice(notice func(transport.Wait)) Option { return func(c *Client) { c.notice = notice } }

// WithRetries sets how often a transient failure is retried (default 4) and
// the first backoff delay (default DefaultRetryBase, growing by half each
// time, with jitter).
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

// WithRateLimit bounds the requests sent to each registry to perSecond
// (bursts of burst), so many pushes at once stay under a registry's own
// limits (Docker Hub's, for one) instead of tripping them; 0 (the default)
// is no bound. Time spent waiting is counted in the
// digestline.registry.throttled.wait metric.
func WithRateLimit(perSecond float64, burst int) Option {
	return func(c *Client) { c.limits.SetRate(perSecond, burst) }
}

// WithUploadLimit bounds the blob uploads running at once to each registry,
// across all of the client's pushes; 0 (the default) is no bound.
func WithUploadLimit(n int) Option { return func(c *Client) { c.limits.SetUploads(n) } }

// DefaultTimeout is how long a registry may leave a request unanswered, or
// a connection without a byte moving either way, unless WithTimeout says
// otherwise.
const DefaultTimeout = 60 * time.Second

// WithTimeout bounds how long a registry may stay silent: no response
// headers d after a request was sent, or no byte read or written on a
// connection for d (a body that stops mid-blob, an upload the registry
// stops reading), is a transport failure naming the registry and d.
// Default DefaultTimeout; it applies to the client's own transport, not
// to one given by WithTransport.
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }
