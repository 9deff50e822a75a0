package reporter

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/service"
	"golang.org/x/sync/errgroup"
)

// DefaultEnvironments is the promotion chain unless configured otherwise.
var DefaultEnvironments = []string{"dev", "staging", "prod"}

// Config configures the reporter.
type Config struct {
	service.Deps
	// Environments is the promotion chain, first to last (default dev, staging, prod).
	Environments []string
	// Listener serves the HTTP API; nil means listen on APIAddr.
	Listener net.Listener
	// APIAddr is the API's address when Listener is nil (default 127.0.0.1:8080).
	APIAddr string
}

// Run records promotions, indexes runs and serves the API until ctx is cancelled.
func Run(ctx context.Context, cfg Config) error {
	if len(cfg.Environments) == 0 {
		cfg.Environments = DefaultEnvironments
	}
	store, err := openStore(ctx, cfg.JetStream)
	if err != nil {
		return err
	}
	ln := cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cmp.Or(cfg.APIAddr, "127.0.0.1:8080")); err != nil {
			return fmt.Errorf("reporter API: %w", err)
		}
	}
	r := &reporter{cfg: cfg, bus: cfg.Bus("reporter"), store: store}
	srv := &http.Server{Handler: r.routes(), ReadHeaderTimeout: 10 * time.Second}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return r.bus.Consume(gctx, events.ConsumerSpec{Durable: "reporter", Events: []events.Name{events.VerifyCompleted}}, r.promote)
	})
	g.Go(func() error {
		return r.bus.Consume(gctx, events.ConsumerSpec{Durable: "reporter-runs"}, r.index)
	})
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("reporter API: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		return service.ShutdownHTTP(srv, 5*time.Second)
	})
	return g.Wait()
}

type reporter struct {
	cfg   Config
	bus   *events.Bus
	store *store
}

// promote records a verified digest in the environment it was built for
// (the first of the chain by default) and emits promoted. A redelivered
// verify.completed finds its own record and emits the same event again,
// which JetStream de-duplicates by id.
func (r *reporter) promote(ctx context.Context, m events.Message) error {
	vr, err := events.Decode[events.VerifyResult](m.Event)
	if err != nil {
		return err
	}
	env := cmp.Or(vr.PromoteTo, r.cfg.Environments[0])
	repo, tag, err := splitTarget(vr.Target)
	if err != nil {
		return events.Permanent(err)
	}
	if !slices.Contains(r.cfg.Environments, env) {
		_, err := r.bus.Emit(ctx, m.Event, events.PromotionRejected, "", events.Rejection{
			Environment: env, Repository: repo, Digest: vr.Digest, Gate: "environment",
			Reason: fmt.Sprintf("%q is not in the promotion chain %v", env, r.cfg.Environments),
		})
		return err
	}
	evidence := vr.Evidence
	evidence.Verify = m.Event.ID()
	rec, err := r.store.record(ctx, events.Promotion{
		Environment: env, Repository: repo, Digest: vr.Digest, Tag: tag,
		PromotedAt: time.Now().UTC(), RunID: events.RunID(m.Event), Evidence: evidence,
	})
	if err != nil {
		return err
	}
	r.cfg.Log().Info(fmt.Sprintf("promoted %s %s@%s", rec.Environment, rec.Repository, rec.Digest), "run_id", rec.RunID)
	_, err = r.bus.Emit(ctx, m.Event, events.Promoted, "", rec)
	return err
}

// index files every event under its run, in stream order.
func (r *reporter) index(ctx context.Context, m events.Message) error {
	return r.store.indexEvent(ctx, m)
}
