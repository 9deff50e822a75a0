package service

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/telemetry"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
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
	BusOptions []events.Option
}

// Bus returns the event bus of service, publishing as /digestline/<service>/<instance>.
func (d Deps) Bus(service string) *events.Bus {
	return events.NewBus(d.JetStream, "/digestline/"+service+"/"+cmp.Or(d.Instance, "local"),
		append([]events.Option{events.WithLogger(d.Log()), events.WithTracerProvider(d.Traces())}, d.BusOptions...)...)
}

// Traces returns the tracer provider, the global one when none was set.
func (d Deps) Traces() trace.TracerProvider {
	if d.TracerProvider == nil {
		return otel.GetTracerProvider()
	}
	return d.TracerProvider
}

// Registry returns a registry client with credentials from the environment
// (DIGESTLINE_REGISTRY_USERNAME/PASSWORD) or the docker config, tracing to
// the process's provider: what a service uses unless it is given one.
func (d Deps) Registry() *registry.Client {
	return registry.New(append(registry.CredentialsFromEnv(), registry.WithTracerProvider(d.Traces()))...)
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
// before calling Main), sets up telemetry, connects and provisions, then calls
// run until SIGINT or SIGTERM. It exits non-zero with the error on failure.
func Main(name string, run func(ctx context.Context, d Deps) error) {
	natsURL := flag.String("nats", Env("NATS_URL", DefaultNATSURL), "NATS server URL (DIGESTLINE_NATS_URL)")
	logLevel := flag.String("log-level", Env("LOG_LEVEL", "info"), "debug, info, warn or error (DIGESTLINE_LOG_LEVEL)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := mainErr(ctx, name, *natsURL, *logLevel, run); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

func mainErr(ctx context.Context, name, natsURL, logLevel string, run func(context.Context, Deps) error) error {
	tel, err := telemetry.Setup(ctx, "digestline-"+name, os.Stderr, logLevel)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()
	nc, js, err := ConnectFromEnv(natsURL, "digestline-"+name)
	if err != nil {
		return err
	}
	defer nc.Drain()
	if err := events.Provision(ctx, js, events.ProvisionOptions{}); err != nil {
		return err
	}
	host, _ := os.Hostname()
	tel.Logger.Info("started", slog.String("nats", natsURL))
	return run(ctx, Deps{JetStream: js, TracerProvider: tel.TracerProvider, Logger: tel.Logger, Instance: cmp.Or(host, "local")})
}
