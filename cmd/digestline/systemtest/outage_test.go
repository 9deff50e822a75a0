package systemtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/cmd/digestline/internal/ship"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/registry/registrytest"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/services/builder"
	"github.com/digestline/digestline/services/pusher"
	"github.com/digestline/digestline/services/reporter"
	"github.com/digestline/digestline/services/verifier"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/nats-io/nats-server/v2/server"
	"golang.org/x/sync/errgroup"
)

// natsBus is a NATS server that a test can stop and start again on the
// same port and storage, as an operator restarting it would.
type natsBus struct {
	t    *testing.T
	opts server.Options
	mu   sync.Mutex
	ns   *server.Server
}

func newNATSBus(t *testing.T) *natsBus {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	b := &natsBus{t: t, opts: server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true}}
	b.start()
	t.Cleanup(b.stop)
	return b
}

func (b *natsBus) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", b.opts.Port) }

func (b *natsBus) start() {
	b.mu.Lock()
	defer b.mu.Unlock()
	opts := b.opts
	ns, err := server.NewServer(&opts)
	if err != nil {
		b.t.Error(err)
		return
	}
	go ns.Start()
	if !ns.ReadyForConnections(15 * time.Second) {
		b.t.Error("nats-server did not start")
	}
	b.ns = ns
}

func (b *natsBus) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ns != nil {
		b.ns.Shutdown()
		b.ns.WaitForShutdown()
		b.ns = nil
	}
}

// runServices runs the four services, each on its own NATS connection as
// separate processes would be, until the test ends; natsURL may list
// several servers, comma-separated.
func runServices(t *testing.T, natsURL string, reg *registry.Client, prov bus.ProvisionOptions) (apiURL string) {
	ctx, cancel := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(ctx)
	deps := func(name string) service.Deps {
		nc, js, err := service.Connect(natsURL, "digestline-"+name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return service.Deps{JetStream: js, Instance: "outage", Registry: reg}
	}
	d := deps("provision")
	if err := bus.Provision(ctx, d.JetStream, prov); err != nil {
		t.Fatal(err)
	}
	api, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b, p, v, r := deps("builder"), deps("pusher"), deps("verifier"), deps("reporter")
	// A service that stops on its own stops the others (errgroup): say
	// which, and why, when it happens, not after the test gave up.
	run := func(name string, f func() error) {
		g.Go(func() error {
			err := f()
			if gctx.Err() == nil { // not stopped by the test, nor by another service
				t.Errorf("the %s stopped while the test ran: %v", name, err)
			}
			return err
		})
	}
	run("builder", func() error { return builder.Run(gctx, builder.Config{Deps: b}) })
	run("pusher", func() error { return pusher.Run(gctx, pusher.Config{Deps: p}) })
	run("verifier", func() error { return verifier.Run(gctx, verifier.Config{Deps: v}) })
	run("reporter", func() error { return reporter.Run(gctx, reporter.Config{Deps: r, Listener: api}) })
	t.Cleanup(func() {
		cancel()
		_ = g.Wait() // each service's own stop is reported as it happens
	})
	return "http://" + api.Addr().String()
}

// registryOnce serves the embedded registry on a free port and returns its
// host:port; the first blob upload whose path contains part also runs hook
// (in a goroutine of its own, while the upload goes on).
func registryOnce(t *testing.T, part string, hook func()) string {
	var once sync.Once
	return e2etest.EmbeddedRegistryWrapped(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if registrytest.CarriesBlob(r) && strings.Contains(r.URL.Path, part) {
				once.Do(func() { go hook() })
			}
			h.ServeHTTP(w, r)
		})
	})
}

// shipUntilPromoted ships req, asking again while the request itself cannot
// get through (the bus is away: ship says so clearly); a run that ends in a
// failure is an error.
func shipUntilPromoted(ctx context.Context, b *bus.Bus, req ship.Request) (ship.Result, error) {
	for {
		res, err := ship.Ship(ctx, b, req, io.Discard)
		var runErr *runs.Error
		if err == nil || errors.As(err, &runErr) || ctx.Err() != nil {
			return res, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestRunsSurviveABusOutage stops NATS in the middle of a run's upload for
// a few seconds: every run still ends promoted, once.
func TestRunsSurviveABusOutage(t *testing.T) {
	b := newNATSBus(t)
	down := make(chan struct{})
	// The first blob upload of run 3 takes the bus down, mid-push.
	host := registryOnce(t, "/outage3/blobs/uploads/", func() {
		b.stop()
		close(down)
		time.Sleep(3 * time.Second)
		b.start()
	})
	reg := registry.New(registry.WithKeychain(authn.NewMultiKeychain()))
	runServices(t, b.url(), reg, bus.ProvisionOptions{})

	nc, js, err := service.Connect(b.url(), "test-ship")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	shipBus := bus.NewBus(js, "/digestline/test/ship")
	const runs = 6
	var promoted atomic.Int32
	g, ctx := errgroup.WithContext(context.Background())
	for i := 1; i <= runs; i++ {
		if i == 4 {
			<-down // the rest start while the bus is down or coming back
		}
		dir := e2etest.SourceDir(t, fmt.Sprintf("outage %d", i))
		g.Go(func() error {
			ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
			defer cancel()
			res, err := shipUntilPromoted(ctx, shipBus, ship.Request{Dir: dir, Target: fmt.Sprintf("%s/team/outage%d:1", host, i)})
			if err != nil {
				return fmt.Errorf("run %d: %w", i, err) // the outage failed a run
			}
			if res.Promotion.Environment == "dev" {
				promoted.Add(1)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if promoted.Load() != runs {
		t.Fatalf("%d of %d runs promoted", promoted.Load(), runs)
	}
}
