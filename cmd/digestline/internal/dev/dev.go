// Package dev runs the whole pipeline in one process: an embedded NATS server
// with JetStream, an embedded OCI registry (olareg, with the referrers API)
// keeping its content under a data directory, the four services and the
// reporter API. It backs `digestline dev` and the end-to-end tests.
package dev

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/evidence"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/digestline/digestline/pkg/verify"
	"github.com/digestline/digestline/services/builder"
	"github.com/digestline/digestline/services/notifier"
	"github.com/digestline/digestline/services/pusher"
	"github.com/digestline/digestline/services/reporter"
	"github.com/digestline/digestline/services/verifier"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/olareg/olareg"
	olaregconfig "github.com/olareg/olareg/config"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
)

// Config configures a dev environment.
type Config struct {
	// DataDir keeps NATS and registry state across restarts.
	DataDir string
	// NATSPort is the NATS client port; -1 picks a free one.
	NATSPort int
	// RegistryAddr and APIAddr are listen addresses; port 0 picks a free one.
	RegistryAddr string
	APIAddr      string
	// Created is the build time stamped into images (SOURCE_DATE_EPOCH).
	Created        time.Time
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider // nil means the global provider
	// Metrics serves /metrics on the API, when set.
	Metrics http.Handler
	// WrapRegistry wraps the embedded registry's handler, e.g. to require
	// credentials or inject faults in tests.
	WrapRegistry func(http.Handler) http.Handler
	// Registry is the client the pusher and verifier use (default: credentials
	// from the environment or the docker config).
	Registry *registry.Client
	// WebhookAddr, when set, serves the builder's webhooks there, mapped
	// by Webhook.
	WebhookAddr string
	Webhook     builder.WebhookConfig
	// Signer signs every image the builder builds; TrustedKeys are the
	// verifier's (the signer's own public key among them, when it signs).
	Signer      sign.Signer
	TrustedKeys []sign.Verifier
	// BusOptions tune the services' buses (tests shorten the redelivery backoff).
	BusOptions []bus.Option
	// Provision sizes the streams and buckets: what they keep, and for how
	// long (bus.RetentionFromEnv).
	Provision bus.ProvisionOptions
	// Reporter configures promotions: the chain, the environment tag, the
	// required referrers and the API's tokens. With no tokens, one is made
	// and kept in <DataDir>/api-token.
	Reporter reporter.Config
	// Notifications, when set, runs the notifier with these webhooks.
	Notifications []notifier.Rule
}

// Env is a running dev environment.
type Env struct {
	NATSURL      string
	RegistryAddr string // host:port of the embedded registry
	APIURL       string // base URL of the reporter API
	TokenFile    string // where the generated API token is, when none was given
	WebhookURL   string // base URL of the webhooks, when served
	JetStream    jetstream.JetStream
	Conn         *nats.Conn

	done chan struct{}
	err  error
}

// Start starts everything and returns once NATS, the registry and the API are
// accepting connections. Cancelling ctx stops the services (letting in-flight
// events finish), then the registry and NATS; Wait reports how that went.
func Start(ctx context.Context, cfg Config) (*Env, error) {
	log := cmp.Or(cfg.Logger, slog.Default())
	env := &Env{done: make(chan struct{})}
	var c closers
	if err := env.startBus(ctx, cfg, &c); err != nil {
		c.close()
		return nil, err
	}
	if len(cfg.Reporter.Tokens) == 0 {
		env.TokenFile = filepath.Join(cfg.DataDir, "api-token")
		token, err := reporter.TokenFile(env.TokenFile)
		if err != nil {
			c.close()
			return nil, err
		}
		cfg.Reporter.Tokens = map[string]string{"dev": token}
	}
	hookLn, apiLn, err := env.listen(cfg, &c)
	if err != nil {
		c.close()
		return nil, err
	}
	// Last to start, so nothing after it can fail: from here run owns the
	// shutdown.
	regSrv, regLn, err := startRegistry(cfg, log)
	if err != nil {
		c.close()
		return nil, err
	}
	env.RegistryAddr = regLn.Addr().String()
	deps := service.Deps{JetStream: env.JetStream, TracerProvider: cfg.TracerProvider, MeterProvider: cfg.MeterProvider, Logger: log, Instance: "dev",
		BusOptions: cfg.BusOptions, Health: &service.Health{NC: env.Conn, JS: env.JetStream, Registries: []string{env.RegistryAddr}, Metrics: cfg.Metrics},
		Registry: cfg.Registry}
	env.run(ctx, cfg, deps, regSrv, regLn, hookLn, apiLn, &c)
	return env, nil
}

// closers undo what Start did so far, last first.
type closers []func()

func (c *closers) add(f func()) { *c = append(*c, f) }

func (c *closers) close() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
}

// startBus starts the embedded NATS server, connects to it and provisions
// the bus.
func (env *Env) startBus(ctx context.Context, cfg Config, c *closers) error {
	ns, err := startNATS(cfg)
	if err != nil {
		return err
	}
	env.NATSURL = ns.ClientURL()
	c.add(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, js, err := service.Connect(ns.ClientURL(), "digestline-dev", nats.InProcessServer(ns))
	if err != nil {
		return err
	}
	env.Conn, env.JetStream = nc, js
	c.add(func() { _ = nc.Drain() })
	if err := bus.Provision(ctx, js, cfg.Provision); err != nil {
		return err
	}
	if cfg.MeterProvider != nil {
		return bus.RegisterDLQDepth(cfg.MeterProvider, js)
	}
	return nil
}

// listen opens the webhooks' listener (when they are served) and the API's.
func (env *Env) listen(cfg Config, c *closers) (hookLn, apiLn net.Listener, err error) {
	if cfg.WebhookAddr != "" {
		if hookLn, err = net.Listen("tcp", cfg.WebhookAddr); err != nil {
			return nil, nil, fmt.Errorf("webhooks (pass --webhook-addr): %w", err)
		}
		env.WebhookURL = "http://" + hookLn.Addr().String()
		c.add(func() { _ = hookLn.Close() })
	}
	if apiLn, err = net.Listen("tcp", cmp.Or(cfg.APIAddr, "127.0.0.1:8080")); err != nil {
		return nil, nil, fmt.Errorf("reporter API (pass --api-addr): %w", err)
	}
	env.APIURL = "http://" + apiLn.Addr().String()
	c.add(func() { _ = apiLn.Close() })
	return hookLn, apiLn, nil
}

// run serves the registry and runs the four services until ctx ends: the
// registry serves until the services have drained (their in-flight pushes
// need it); if it fails, the services stop. Then c closes the rest.
func (env *Env) run(ctx context.Context, cfg Config, deps service.Deps, regSrv *http.Server, regLn net.Listener, hookLn, apiLn net.Listener, c *closers) {
	sctx, stopServices := context.WithCancel(ctx)
	regCtx, stopRegistry := context.WithCancel(context.WithoutCancel(ctx))
	regDone := make(chan error, 1)
	go func() {
		err := as(regCtx, "registry", func(ctx context.Context) error { return service.Serve(ctx, regSrv, regLn, "embedded registry") })()
		if err != nil {
			stopServices()
		}
		regDone <- err
	}()
	g, gctx := errgroup.WithContext(sctx)
	hooks := cfg.Webhook
	hooks.PageURL = env.APIURL
	g.Go(as(gctx, "builder", func(ctx context.Context) error {
		return builder.Run(ctx, builder.Config{Deps: deps, Created: cfg.Created, WebhookListener: hookLn, Webhook: hooks, Signer: cfg.Signer})
	}))
	// One process, one memory of what is proven: the reporter's policy does
	// not read again the signatures the verifier has just proven.
	proven := evidence.NewCache(0)
	g.Go(as(gctx, "pusher", func(ctx context.Context) error {
		return pusher.Run(ctx, pusher.Config{Deps: deps, Proof: verify.Options{Keys: cfg.TrustedKeys, Proven: proven}})
	}))
	g.Go(as(gctx, "verifier", func(ctx context.Context) error {
		return verifier.Run(ctx, verifier.Config{Deps: deps, Proof: verify.Options{Keys: cfg.TrustedKeys, Proven: proven}})
	}))
	rcfg := cfg.Reporter
	rcfg.Deps, rcfg.Listener, rcfg.Proven = deps, apiLn, proven
	g.Go(as(gctx, "reporter", func(ctx context.Context) error { return reporter.Run(ctx, rcfg) }))
	if len(cfg.Notifications) > 0 {
		g.Go(as(gctx, "notifier", func(ctx context.Context) error {
			return notifier.Run(ctx, notifier.Config{Deps: deps, Rules: cfg.Notifications, PageURL: env.APIURL})
		}))
	}
	go func() {
		defer close(env.done)
		err := g.Wait()
		stopServices()
		stopRegistry()
		env.err = errors.Join(err, <-regDone)
		c.close()
	}()
}

// PartLabel is the pprof label that names the part of `digestline dev` a
// goroutine works for: "nats" (the embedded server), "registry" (the
// embedded registry), or a service ("builder", "pusher", "verifier",
// "reporter", "notifier"). Every goroutine a part starts inherits it, so a
// CPU profile (go tool pprof -tagfocus, or BenchmarkLoad's breakdown) tells
// them apart; what carries none is the shared NATS client, the Go runtime
// (its garbage collector) and the caller.
const PartLabel = "digestline"

func partLabel(name string) pprof.LabelSet { return pprof.Labels(PartLabel, name) }

// as is f run as the part name (PartLabel).
func as(ctx context.Context, name string, f func(context.Context) error) func() error {
	return func() (err error) {
		pprof.Do(ctx, partLabel(name), func(ctx context.Context) { err = f(ctx) })
		return service.StoppedIsNoFailure(ctx, err)
	}
}

// Wait blocks until the environment has stopped and returns the first error.
func (e *Env) Wait() error {
	<-e.done
	return e.err
}

func startNATS(cfg Config) (*server.Server, error) {
	dir := filepath.Join(cfg.DataDir, "nats")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	port := cfg.NATSPort
	if port == 0 {
		port = 4222
	}
	if port > 0 { // -1 picks a free one
		// The server, which logs nothing here, only stops answering when
		// its port is taken: bind it first to say so at once.
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS on %s: %w (is another digestline dev or NATS server running? pass --nats-port)", addr, err)
		}
		_ = ln.Close()
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "digestline-dev",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	pprof.Do(context.Background(), partLabel("nats"), func(context.Context) { ns.Start() })
	if !ns.ReadyForConnections(15 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS did not start on 127.0.0.1:%d (is the port in use? pass --nats-port)", port)
	}
	return ns, nil
}

func startRegistry(cfg Config, log *slog.Logger) (*http.Server, net.Listener, error) {
	srv, err := Registry(filepath.Join(cfg.DataDir, "registry"), log, cfg.WrapRegistry)
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", cmp.Or(cfg.RegistryAddr, "127.0.0.1:5000"))
	if err != nil {
		_ = srv.Close()
		return nil, nil, fmt.Errorf("embedded registry (pass --registry-addr): %w", err)
	}
	return srv, ln, nil
}

// Registry is the OCI registry of digestline dev (olareg, with the
// referrers API) storing under dir, as an HTTP server to serve; wrap, when
// set, wraps its handler. It deletes manifests (digestline gc), and its
// own garbage collection reclaims the blobs nothing refers to any more,
// every 15 minutes, once they are an hour old.
func Registry(dir string, log *slog.Logger, wrap func(http.Handler) http.Handler) (*http.Server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	deletes := true
	reg := olareg.New(olaregconfig.Config{
		Storage: olaregconfig.ConfigStorage{StoreType: olaregconfig.StoreDir, RootDir: dir},
		API:     olaregconfig.ConfigAPI{DeleteEnabled: &deletes},
		Log:     log.With("component", "registry"),
	})
	var h http.Handler = firstStatusOnly(guardRepoState(reg))
	if wrap != nil {
		h = wrap(h)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	srv.RegisterOnShutdown(func() { _ = reg.Close() })
	return srv, nil
}

// guardRepoState works around data races in olareg v0.1.2: a repository's
// "exists" flag is written without a lock by uploads (repoInit) and by
// manifest reads (indexLoad), while other requests read it
// (internal/store/dir.go, dirRepo.exists); newer olareg versions are not
// available from the module proxy here. The flag belongs to one
// repository, so the guard is per repository: blob reads only read it and
// share a read lock (verification stays parallel); every other request to
// a repository holds its lock alone, and requests to other repositories go
// on meanwhile. The /v2/ ping reads no repository and takes no lock; any
// other request that names no repository waits for all of them.
func guardRepoState(h http.Handler) http.Handler {
	var all sync.RWMutex // held shared by every repository request
	var repos sync.Map   // repository name → *sync.RWMutex
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		repo, readsBlob, ping := route(r.URL.Path)
		switch {
		case ping:
		case repo == "":
			all.Lock()
			defer all.Unlock()
		default:
			all.RLock()
			defer all.RUnlock()
			v, _ := repos.LoadOrStore(repo, new(sync.RWMutex))
			mu := v.(*sync.RWMutex)
			if readsBlob && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
				mu.RLock()
				defer mu.RUnlock()
			} else {
				mu.Lock()
				defer mu.Unlock()
			}
		}
		h.ServeHTTP(w, r)
	})
}

// firstStatusOnly keeps the first status a POST's handler writes and drops
// any later one. olareg v0.1.2 answers a single-POST upload with 201 and
// then, falling through, writes 202 too (blob.go, blobUploadPost), which
// net/http would log as a superfluous WriteHeader for every small blob
// pushed.
func firstStatusOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			w = &firstStatus{ResponseWriter: w}
		}
		h.ServeHTTP(w, r)
	})
}

type firstStatus struct {
	http.ResponseWriter
	written bool
}

func (w *firstStatus) WriteHeader(code int) {
	if !w.written {
		w.written = true
		w.ResponseWriter.WriteHeader(code)
	}
}

func (w *firstStatus) Write(b []byte) (int, error) {
	w.written = true
	return w.ResponseWriter.Write(b)
}

// route reads an OCI distribution path as olareg does (cleaned of "." and
// ".."): the repository it is about ("" when none), whether it addresses a
// blob by digest, and whether it is the /v2/ ping. The route is the last
// route word in the path: a repository's name may hold one
// ("team/tags/app"), a tag, digest or upload id cannot.
func route(rawPath string) (repo string, blob, ping bool) {
	p := path.Clean("/" + rawPath)
	if p == "/v2" {
		return "", false, true
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return "", false, false
	}
	at, word := -1, ""
	for _, w := range []string{"/blobs/", "/manifests/", "/referrers/", "/tags/"} {
		if i := strings.LastIndex(rest, w); i > at {
			at, word = i, w
		}
	}
	if at <= 0 {
		return "", false, false
	}
	return rest[:at], word == "/blobs/" && strings.HasPrefix(rest[at+len(word):], "sha256:"), false
}
