package reporter

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/evidence"
	"github.com/digestline/digestline/pkg/policy"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
)

// DefaultEnvironments is the promotion chain unless configured otherwise.
var DefaultEnvironments = []string{"dev", "staging", "prod"}

// Config configures the reporter.
type Config struct {
	service.Deps
	// Environments is the promotion chain, first to last (default dev, staging, prod).
	Environments []string
	// TraceURL is a trace's page, {traceId} replaced by a run's trace id
	// (e.g. http://jaeger:16686/trace/{traceId}): run pages link it.
	TraceURL string
	// TagFormat names the tag a promotion to an environment moves; {env} is
	// replaced by the environment (default "{env}": repo:staging).
	TagFormat string
	// Places are where environments live when not in the repository
	// builds are pushed to (DIGESTLINE_PLACES, or place: in the policy
	// file): a promotion there copies the digest, with everything attached
	// to it, and proves it before the tag moves.
	Places map[string]policy.Place
	// RequiredReferrers lists, per environment, artifact types that must be
	// attached to a digest before it may enter (e.g. an SPDX SBOM for prod).
	RequiredReferrers map[string][]string
	// Tokens are the bearer tokens allowed to change state through the API,
	// by the name a record stores as who asked. With none, the API only reads.
	Tokens map[string]string
	// Listener serves the HTTP API; nil means listen on APIAddr.
	Listener net.Listener
	// APIAddr is the API's address when Listener is nil (default 127.0.0.1:8080).
	APIAddr string
	// Policy holds each environment's rules in CEL and the keys whose
	// evidence counts there (DIGESTLINE_POLICY; none: the built-in gates only).
	Policy *policy.Policy
	// Keys are the trusted public keys for environments whose policy names
	// none (DIGESTLINE_TRUSTED_KEYS).
	Keys []sign.Verifier
	// Signer, when set, signs a SLSA verification summary of every
	// promotion (DIGESTLINE_SIGNING_KEY), attached to the promoted digest.
	Signer sign.Signer
	// GC collects garbage on a schedule (DIGESTLINE_GC; nil: only when
	// asked, POST /v1/gc).
	GC *GCSchedule
	// Proven remembers the evidence proven (default: a cache of its own), so
	// the summary after a promotion, and the next environment's policy,
	// read only the listing and new referrers.
	Proven *evidence.Cache
}

// envName is what an environment may be called: one KV key token.
var envName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func (c *Config) defaults() error {
	if c.Proven == nil {
		c.Proven = evidence.NewCache(0)
	}
	if len(c.Environments) == 0 {
		c.Environments = DefaultEnvironments
	}
	for i, e := range c.Environments {
		if !envName.MatchString(e) {
			return fmt.Errorf("environment %q: want %s", e, envName)
		}
		if slices.Contains(c.Environments[:i], e) {
			return fmt.Errorf("environment %q is twice in the chain", e)
		}
	}
	for env := range c.RequiredReferrers {
		if !slices.Contains(c.Environments, env) {
			return fmt.Errorf("required referrers for %q, which is not in the chain %v", env, c.Environments)
		}
	}
	if c.TagFormat == "" {
		c.TagFormat = "{env}"
	}
	if _, err := name.NewTag("example.com/repo:" + strings.ReplaceAll(c.TagFormat, "{env}", c.Environments[0])); err != nil {
		return fmt.Errorf("tag format %q does not make a valid tag: %w", c.TagFormat, err)
	}
	places, err := mergePlaces(c.Places, c.Policy.Places(), c.Environments)
	if err != nil {
		return err
	}
	c.Places = places
	for name, token := range c.Tokens {
		if name == "" || len(token) < 16 {
			return fmt.Errorf("API token %q: want a name and a token of at least 16 characters", name)
		}
	}
	return nil
}

// Run gates and records promotions and serves the API until ctx is
// cancelled.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.defaults(); err != nil {
		return fmt.Errorf("reporter: %w", err)
	}
	w, err := cfg.Worker(ctx, "reporter")
	if err != nil {
		return err
	}
	var store *store
	var ri *runIndexer
	err = bus.UntilReady(ctx, cfg.Log(), "the reporter's buckets and lists", time.Now().Add(bus.StartWait), func(ctx context.Context) (err error) {
		if store, err = openStore(ctx, cfg.JetStream); err != nil {
			return err
		}
		if err := store.indexHistory(ctx); err != nil {
			return err
		}
		if ri, err = openRunIndexer(ctx, cfg.JetStream, store.index); err != nil {
			return err
		}
		if err := ri.fileRunIDs(ctx, store); err != nil {
			return err
		}
		// Earlier versions filed every event in a KV index through this
		// consumer; runs are read from their subjects now. Its bucket ages out.
		if err := cfg.JetStream.DeleteConsumer(ctx, events.StreamName, "reporter-runs"); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("retire the reporter-runs consumer: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	ln := cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cmp.Or(cfg.APIAddr, "127.0.0.1:8080")); err != nil {
			return fmt.Errorf("reporter API: %w", err)
		}
	}
	r := &reporter{Worker: w, cfg: cfg, store: store, runs: ri}
	ri.onStart, ri.onEnd = r.queueRun, r.unqueueRun
	srv := &http.Server{Handler: r.routes(), ReadHeaderTimeout: 10 * time.Second}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		router := r.Bus.Router(bus.ConsumerSpec{Durable: "reporter"})
		router.Handle(events.VerifyCompleted, bus.Data(r.verified))
		router.Handle(events.PromotionRequested, bus.Data(r.requested))
		router.Handle(events.DeploymentReported, bus.Data(r.deployed))
		router.Handle(events.ReleaseRequested, bus.Data(r.releaseRequested))
		router.Handle(events.ReleaseVerified, bus.Data(r.releaseVerified))
		router.Handle(events.PushFailed, bus.Data(r.releaseFailed))
		router.Handle(events.VerifyFailed, bus.Data(r.releaseFailed))
		return router.Run(gctx)
	})
	g.Go(func() error { return ri.router(r.Bus).Run(gctx) })
	if r.cfg.GC != nil {
		g.Go(func() error { return r.collectEvery(gctx, r.cfg.GC) })
	}
	if r.cfg.Policy.HasWindows() {
		g.Go(func() error { return r.announceWindows(gctx, 30*time.Second) })
	}
	g.Go(func() error { return service.Serve(gctx, srv, ln, "reporter API") })
	return g.Wait()
}

type reporter struct {
	service.Worker
	cfg   Config
	store *store
	runs  *runIndexer
}
