package service

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/digestline/digestline/pkg/blobstore"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/tags"
	"github.com/digestline/digestline/pkg/telemetry"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
)

// DefaultNATSURL is where services look for NATS unless told otherwise.
const DefaultNATSURL = "nats://127.0.0.1:4222"

// Deps are what every service's Run needs; each service's Config embeds them.
type Deps struct {
	JetStream      jetstream.JetStream
	TracerProvider trace.TracerProvider // nil means the global provider
	Logger         *slog.Logger         // nil means slog.Default()
	// Instance names this process in event sources (/digestline/<service>/<instance>).
	Instance string
	// BusOptions tune every service's bus (e.g. a faster redelivery backoff in tests).
	BusOptions    []bus.Option
	MeterProvider metric.MeterProvider // nil means the global provider
	// Health is the process's readiness; a service with an HTTP server of
	// its own (the reporter) serves it there.
	Health *Health
	// Registry is the registry client a service pushes, pulls and checks
	// with; nil means one with credentials and settings from the
	// environment (see RegistryClient).
	Registry *registry.Client
	// Tags orders the runs' moves of each tag by request time.
	Tags *tags.Ledger
}

// Bus returns the event bus of service, publishing as /digestline/<service>/<instance>.
func (d Deps) Bus(service string) *bus.Bus {
	return bus.NewBus(d.JetStream, "/digestline/"+service+"/"+cmp.Or(d.Instance, "local"),
		append([]bus.Option{bus.WithLogger(d.Log()), bus.WithTracerProvider(d.Traces()), bus.WithMeterProvider(d.Meters())}, d.BusOptions...)...)
}

// Meters returns the meter provider, the global one when none was set.
func (d Deps) Meters() metric.MeterProvider {
	if d.MeterProvider == nil {
		return otel.GetMeterProvider()
	}
	return d.MeterProvider
}

// Traces returns the tracer provider, the global one when none was set.
func (d Deps) Traces() trace.TracerProvider {
	if d.TracerProvider == nil {
		return otel.GetTracerProvider()
	}
	return d.TracerProvider
}

// RegistryClient returns d.Registry, or, when it is nil, a registry client
// with credentials from the environment (DIGESTLINE_REGISTRY_USERNAME/
// PASSWORD) or the docker config and the environment's other registry
// settings, tracing to the process's providers.
func (d Deps) RegistryClient() (*registry.Client, error) {
	if d.Registry != nil {
		return d.Registry, nil
	}
	opts, err := registry.OptionsFromEnv()
	if err != nil {
		return nil, err
	}
	return registry.New(append(opts, registry.WithTracerProvider(d.Traces()), registry.WithMeterProvider(d.Meters()))...), nil
}

// Log returns the logger.
func (d Deps) Log() *slog.Logger {
	if d.Logger == nil {
		return slog.Default()
	}
	return d.Logger
}

// Env returns the DIGESTLINE_<key> variable, or def.
func Env(key, def string) string { return cmp.Or(os.Getenv("DIGESTLINE_"+key), def) }

// Connect connects to NATS (reconnecting forever) and returns JetStream.
func Connect(url, clientName string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	opts = append([]nats.Option{nats.Name(clientName), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, nil, explainConnect(url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("JetStream on %s: %w", url, err)
	}
	return nc, js, nil
}

// Main runs one service process: it parses flags (the caller may define more
// before calling Main), sets up telemetry, connects and provisions, serves
// /healthz, /readyz and /metrics on healthAddr (DIGESTLINE_HEALTH_ADDR; ""
// for a service that serves them on its own HTTP server), then calls run
// until SIGINT or SIGTERM. It exits non-zero with the error on failure.
func Main(name, healthAddr string, run func(ctx context.Context, d Deps) error) {
	var p process
	flag.StringVar(&p.natsURL, "nats", Env("NATS_URL", DefaultNATSURL), "NATS server URL (DIGESTLINE_NATS_URL)")
	flag.StringVar(&p.logLevel, "log-level", Env("LOG_LEVEL", "info"), "debug, info, warn or error (DIGESTLINE_LOG_LEVEL)")
	flag.StringVar(&p.healthAddr, "health-addr", Env("HEALTH_ADDR", healthAddr), "where /healthz, /readyz and /metrics are served (DIGESTLINE_HEALTH_ADDR)")
	registries := flag.String("ready-registries", Env("READY_REGISTRIES", ""), "registries (host[:port], comma-separated) /readyz checks (DIGESTLINE_READY_REGISTRIES)")
	grace := flag.String("shutdown-grace", Env("SHUTDOWN_GRACE", "30s"), "how long in-flight work may take after SIGTERM (DIGESTLINE_SHUTDOWN_GRACE)")
	healthcheck := flag.String("healthcheck", "", "only GET this URL (e.g. http://127.0.0.1:8081/readyz) and exit 0 when it answers 200: a container health check for images without a shell")
	flag.Parse()
	if *healthcheck != "" {
		if err := Probe(*healthcheck); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			os.Exit(1)
		}
		return
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, r := range strings.Split(*registries, ",") {
		if r = strings.TrimSpace(r); r != "" {
			p.registries = append(p.registries, r)
		}
	}
	var err error
	if p.grace, err = time.ParseDuration(*grace); err == nil {
		err = p.run(ctx, name, run)
	} else {
		err = fmt.Errorf("--shutdown-grace %q: %w", *grace, err)
	}
	if err = StoppedIsNoFailure(ctx, err); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// StoppedIsNoFailure is err, unless it is ctx's cancellation: a service
// stopped while it was still starting (waiting for the bus, its buckets)
// ends as one stopped later does, without an error.
func StoppedIsNoFailure(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// handBack is the part of the shutdown grace kept for cancelling the
// handlers still running and handing their events back.
func handBack(grace time.Duration) time.Duration { return min(grace/5, 5*time.Second) }

// process is how Main runs a service.
type process struct {
	natsURL, logLevel, healthAddr string
	registries                    []string
	grace                         time.Duration // for in-flight work after the signal
}

// run runs the service until ctx ends, then gives its in-flight work
// p.grace to finish: the routers cancel what still runs a little before
// (handBack) and hand its events back. A service still not done at the
// grace is left: the process exits with the work unacknowledged (JetStream
// redelivers it after its AckWait).
func (p process) run(ctx context.Context, name string, run func(context.Context, Deps) error) error {
	done := make(chan error, 1)
	go func() { done <- p.serve(ctx, name, run) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	select {
	case err := <-done:
		return err
	case <-time.After(p.grace):
		return fmt.Errorf("in-flight work did not finish within %s of the signal: exiting, it will be redelivered", p.grace)
	}
}

func (p process) serve(ctx context.Context, name string, run func(context.Context, Deps) error) error {
	natsURL, logLevel, healthAddr, registries := p.natsURL, p.logLevel, p.healthAddr, p.registries
	tel, err := telemetry.Setup(ctx, "digestline-"+name, os.Stderr, logLevel)
	if err != nil {
		return err
	}
	defer tel.Close()
	nc, js, err := ConnectFromEnv(natsURL, "digestline-"+name)
	if err != nil {
		return err
	}
	defer nc.Drain()
	replicas, err := strconv.Atoi(Env("NATS_REPLICAS", "1"))
	if err != nil || replicas < 1 {
		return fmt.Errorf("DIGESTLINE_NATS_REPLICAS %q: want 1, or 3 on a cluster", Env("NATS_REPLICAS", ""))
	}
	provision, err := bus.RetentionFromEnv(bus.ProvisionOptions{Replicas: replicas})
	if err != nil {
		return err
	}
	if err := bus.Provision(ctx, js, provision); err != nil {
		return err
	}
	if err := bus.RegisterDLQDepth(tel.MeterProvider, js); err != nil {
		return err
	}
	health := &Health{NC: nc, JS: js, Registries: registries, Metrics: tel.Metrics}
	host, _ := os.Hostname()
	deps := Deps{JetStream: js, TracerProvider: tel.TracerProvider, MeterProvider: tel.MeterProvider, Logger: tel.Logger,
		Instance: cmp.Or(host, "local"), Health: health}
	deps.BusOptions = append(deps.BusOptions, bus.WithShutdownGrace(p.grace-handBack(p.grace)))
	if s := Env("HANDLER_TIMEOUT", ""); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < time.Second {
			return fmt.Errorf("DIGESTLINE_HANDLER_TIMEOUT %q: want a duration of at least 1s, e.g. 10m", s)
		}
		deps.BusOptions = append(deps.BusOptions, bus.WithHandlerTimeout(d))
	}
	if s := Env("ACK_WAIT", ""); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < time.Second {
			return fmt.Errorf("DIGESTLINE_ACK_WAIT %q: want a duration of at least 1s, e.g. 10s", s)
		}
		deps.BusOptions = append(deps.BusOptions, bus.WithAckWait(d))
	}
	if healthAddr == "" {
		tel.Logger.Info("started", slog.String("nats", natsURL))
		return run(ctx, deps)
	}
	ln, err := net.Listen("tcp", healthAddr)
	if err != nil {
		return fmt.Errorf("health endpoint (set --health-addr): %w", err)
	}
	srv := &http.Server{Handler: health.Handler(), ReadHeaderTimeout: 10 * time.Second}
	// The health endpoint outlives the signal while in-flight work drains,
	// and stops when the service does.
	hctx, stopHealth := context.WithCancel(context.WithoutCancel(ctx))
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return Serve(hctx, srv, ln, "health endpoint") })
	g.Go(func() error {
		defer stopHealth()
		tel.Logger.Info("started", slog.String("nats", natsURL), slog.String("health", "http://"+ln.Addr().String()))
		return run(gctx, deps)
	})
	return g.Wait()
}

// Worker is what a service's handlers share: the service's bus, the blob
// store between builder and pusher, the registry client, and the order
// of the runs' tag moves.
type Worker struct {
	Bus      *bus.Bus
	Blobs    *blobstore.Store
	Registry *registry.Client
	Tags     *tags.Ledger
}

// Worker opens what the handlers of service share, publishing as
// /digestline/<service>/<instance>, trying for up to bus.StartWait while
// the bus does not answer (a cluster electing leaders).
func (d Deps) Worker(ctx context.Context, service string) (Worker, error) {
	reg, err := d.RegistryClient()
	if err != nil {
		return Worker{}, err
	}
	var blobs *blobstore.Store
	var ledger *tags.Ledger
	err = bus.UntilReady(ctx, d.Log(), service+"'s blob store and tag ledger", time.Now().Add(bus.StartWait), func(ctx context.Context) (err error) {
		if blobs, err = blobstore.Open(ctx, d.JetStream); err != nil {
			return err
		}
		ledger, err = tags.Open(ctx, d.JetStream)
		return err
	})
	if err != nil {
		return Worker{}, err
	}
	return Worker{Bus: d.Bus(service), Blobs: blobs, Registry: reg, Tags: ledger}, nil
}
