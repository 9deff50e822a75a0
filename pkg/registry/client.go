package registry

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/digestline/digestline/pkg/registry/transport"
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
	chunks               sync.Map          // registry host → Support: whether it takes chunked uploads
	chunkProbes          sync.Map          // registry host → true while a push probes its chunked uploads
	singlePost           sync.Map          // registry host → Support: whether it takes a small blob in one POST
	limits               *transport.Limits // per-registry request rate and concurrent uploads
	timeout              time.Duration     // how long a registry may stay silent
	// wait bounds how long a stage goes on retrying a registry that fails
	// (0: only the retry count does); notice hears of silent requests.
	wait   time.Duration
	notice func(transport.Wait)
}

// DefaultRetryBase is the first wait before a stage tries a failing
// registry again; the waits grow by half each time, with jitter, so the
// default 4 retries wait out 4 to 12 seconds of failures: a registry that
// restarts, as go-containerregistry's own retries do (1, 3 and 9 s). At
// 200 ms they gave up after about 2 s, and a registry's restart failed
// every run pushing to it.
const DefaultRetryBase = time.Second

// New returns a Client.
func New(opts ...Option) *Client {
	// Keep enough idle connections for every concurrent blob request of
	// several pushes (the default's 2 per host means re-dialing under load).
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxIdleConnsPerHost = 64
	c := &Client{keychain: authn.DefaultKeychain, base: base, jobs: 4, retries: 4, retryBase: DefaultRetryBase,
		timeout: DefaultTimeout, limits: &transport.Limits{}}
	WithTracerProvider(otel.GetTracerProvider())(c)
	WithMeterProvider(otel.GetMeterProvider())(c)
	for _, o := range opts {
		o(c)
	}
	if c.base == http.RoundTripper(base) {
		// A registry that accepts the connection and never answers, or
		// stops mid-body, fails the request instead of holding it forever.
		base.ResponseHeaderTimeout = c.timeout
		base.DialContext = transport.IdleDialer(c.timeout)
	}
	// Every registry request is counted, an HTTP client span (OpenTelemetry's
	// HTTP semantic conventions) under its stage's span, and held to its
	// registry's limits.
	c.base = transport.New(c.base, c.tracer, c.limits)
	if c.notice != nil {
		c.base = transport.NoticeWaits(c.base, noticeAfter, noticeEvery, c.notice)
	}
	c.auths = map[string]authEntry{}
	return c
}

// A request unanswered for noticeAfter is told of, and again every
// noticeEvery (WithWaitNotice).
const noticeAfter, noticeEvery = 3 * time.Second, 10 * time.Second

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

// pushMetrics are the push's instruments.
type pushMetrics struct {
	stageDuration metric.Float64Histogram
	bytesPushed   metric.Int64Counter
}
