//go:build chaos

package systemtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/cmd/digestline/internal/ship"
	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/registry/registrytest"
	"github.com/digestline/digestline/pkg/service"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/olareg/olareg"
	olaregconfig "github.com/olareg/olareg/config"
	"golang.org/x/sync/errgroup"
)

// TestChaosExactlyOncePromotion ships 100 runs through the four services
// as real processes while each of them is SIGKILLed at random moments and
// restarted. Every run must end promoted exactly once: no run lost, no
// duplicate promoted event, no duplicate record.
func TestChaosExactlyOncePromotion(t *testing.T) {
	const runs = 100
	b := newNATSBus(t)
	olr := olareg.New(olaregconfig.Config{Storage: olaregconfig.ConfigStorage{StoreType: olaregconfig.StoreMem}})
	t.Cleanup(func() { _ = olr.Close() })
	reg := httptest.NewServer(olr)
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")

	work := t.TempDir() // the builder's DIGESTLINE_WORK_DIR
	procs, js := serviceProcesses(t, b, "127.0.0.1:0", "DIGESTLINE_WORK_DIR="+work)
	shipBus := bus.NewBus(js, "/digestline/test/chaos")

	// The monkey: every 100–600 ms, SIGKILL a random service and restart it
	// 50–300 ms later, until every run is promoted; never twice in a row
	// before the service has been up for a crashLoop.
	done := make(chan struct{})
	var monkey sync.WaitGroup
	monkey.Add(1)
	go func() {
		defer monkey.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Duration(100+rand.IntN(500)) * time.Millisecond):
			}
			p := procs[rand.IntN(len(procs))]
			if !p.mayKill() {
				continue
			}
			p.kill()
			time.Sleep(time.Duration(50+rand.IntN(250)) * time.Millisecond)
			p.start(t)
		}
	}()

	var promoted atomic.Int32
	runIDs := make([]string, runs)
	g, ctx := errgroup.WithContext(context.Background())
	g.SetLimit(10)
	for i := range runs {
		dir := e2etest.SourceDir(t, fmt.Sprintf("chaos %d", i))
		g.Go(func() error {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			defer cancel()
			res, err := shipUntilPromoted(ctx, shipBus, ship.Request{Dir: dir, Target: fmt.Sprintf("%s/chaos/app%d:1", host, i)})
			if err != nil {
				return fmt.Errorf("run %d failed under chaos: %w", i, err)
			}
			runIDs[i] = res.RunID
			promoted.Add(1)
			return nil
		})
	}
	err := g.Wait()
	close(done)
	monkey.Wait()
	kills, builderKills := 0, 0
	for _, p := range procs {
		kills += p.kills
		if p.name == "builder" {
			builderKills = p.kills
		}
		t.Logf("%s killed %d times", p.name, p.kills)
	}
	if err != nil {
		t.Fatal(err)
	}
	if promoted.Load() != runs || kills < 10 {
		t.Fatalf("%d of %d runs promoted with %d kills", promoted.Load(), runs, kills)
	}
	// What each killed builder left in the work dir, its kept source
	// trees, went as the next builder started: the running builder's
	// directory is the only one there (once it has started).
	var left []os.DirEntry
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if left, err = os.ReadDir(work); err != nil || len(left) <= 1 || time.Now().After(deadline) {
			break
		}
	}
	if len(left) > 1 || err != nil {
		t.Errorf("%d directories in the builder's work dir after %d kills of the builder, want the running builder's alone (%v)", len(left), builderKills, err)
	}

	// Exactly once: one promoted event per run in the stream, one record and
	// one history entry per repository.
	stream, err := js.Stream(context.Background(), events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(context.Background(), jetstream.WithSubjectFilter(events.Promoted.Filter()))
	if err != nil {
		t.Fatal(err)
	}
	perRun := map[string]uint64{} // promoted events per run, counted by the stream
	for subject, n := range info.State.Subjects {
		perRun[strings.TrimPrefix(subject, events.Promoted.Subject(""))] = n
	}
	for i, id := range runIDs {
		if perRun[id] != 1 {
			t.Errorf("run %d (%s) has %d promoted events", i, id, perRun[id])
		}
	}
	if len(perRun) != runs {
		t.Errorf("promoted events for %d runs, want %d", len(perRun), runs)
	}
	kv, err := js.KeyValue(context.Background(), events.PromotionsBucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.Keys(context.Background())
	if err != nil || len(keys) != runs {
		t.Errorf("%d promotion records, want %d (%v)", len(keys), runs, err)
	}
	hist, err := js.KeyValue(context.Background(), events.HistoryBucket)
	if err != nil {
		t.Fatal(err)
	}
	lister, err := hist.ListKeysFiltered(context.Background(), "h.>")
	if err != nil {
		t.Fatal(err)
	}
	entries := 0
	for range lister.Keys() {
		entries++
	}
	if entries != runs {
		t.Errorf("%d history entries, want %d", entries, runs)
	}
	var dls []bus.DeadLetter
	if dls, err = bus.DeadLetters(context.Background(), js, 0); err != nil || len(dls) != 0 {
		b, _ := json.Marshal(dls)
		t.Errorf("dead letters after the chaos: %s %v", b, err)
	}
}

// TestChaosPusherKilledMidCopy: prod lives in another registry, and the
// pusher is SIGKILLed right after the first blob of the promotion's copy
// has arrived there. The restarted pusher takes the promotion again and
// resumes the copy: no blob that arrived is sent again, the promotion
// completes once, with one record and one promoted event.
func TestChaosPusherKilledMidCopy(t *testing.T) {
	b := newNATSBus(t)
	devHost := e2etest.EmbeddedRegistry(t)

	var (
		pusher   *process
		mu       sync.Mutex
		arrived  = map[string]int{} // blob uploads prod's registry completed, by digest
		killed   = make(chan struct{})
		killOnce sync.Once
	)
	prod := registrytest.Distribution(t, registrytest.DockerRegistry)
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: prod})
	prodHost := serveHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		finishing := registrytest.CarriesBlob(r)
		if finishing {
			time.Sleep(100 * time.Millisecond) // a slow link: the kill lands mid-copy
		}
		rec := &statusRecorder{ResponseWriter: w}
		proxy.ServeHTTP(rec, r)
		if finishing && rec.status == http.StatusCreated {
			mu.Lock()
			arrived[r.URL.Query().Get("digest")]++
			mu.Unlock()
			killOnce.Do(func() {
				go func() {
					pusher.kill()
					close(killed)
					time.Sleep(300 * time.Millisecond)
					pusher.start(t)
				}()
			})
		}
	}))

	apiAddr := fmt.Sprintf("127.0.0.1:%d", e2etest.FreePort(t))
	procs, js := serviceProcesses(t, b, apiAddr, "DIGESTLINE_ENVIRONMENTS=dev,prod", "DIGESTLINE_PLACES=prod="+prodHost+"/prod/{path}",
		"DIGESTLINE_API_TOKENS=alice="+aliceToken)
	pusher = procs[1]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := shipUntilPromoted(ctx, bus.NewBus(js, "/digestline/test/chaos"), ship.Request{Dir: e2etest.SourceDir(t, "killed mid-copy"),
		Target: devHost + "/team/app:1", Spec: events.BuildSpec{Entrypoint: []string{"/bin/app"}, SBOM: true}})
	if err != nil {
		t.Fatal(err)
	}
	digest := res.Promotion.Digest

	t.Setenv("DIGESTLINE_API_TOKEN", aliceToken)
	if out, err := cliErr(t, "promote", devHost+"/team/app@"+digest, "--to", "prod", "--api", "http://"+apiAddr, "--timeout", "2m"); err != nil {
		t.Fatalf("promote to prod: %v\n%s", err, out)
	}
	select {
	case <-killed:
	default:
		t.Fatal("the pusher was never killed: no blob reached prod's registry")
	}
	if pusher.kills != 1 {
		t.Fatalf("the pusher was killed %d times", pusher.kills)
	}
	mu.Lock()
	for d, n := range arrived {
		if n > 1 {
			t.Errorf("blob %s arrived %d times: the resumed copy sent it again", d, n)
		}
	}
	blobs := len(arrived)
	mu.Unlock()
	if blobs < 4 {
		t.Errorf("%d blobs arrived in prod's registry: the image, its SBOMs and dev's record were not all copied", blobs)
	}

	// One promotion: one record, one promoted event for the run, the tag in
	// prod's registry.
	var recs api.Page[events.Promotion]
	if code := e2etest.GetJSON(t, "http://"+apiAddr+"/v1/promotions?env=prod", &recs); code != http.StatusOK || len(recs.Items) != 1 ||
		recs.Items[0].Digest != digest || recs.Items[0].Location != prodHost+"/prod/team/app" {
		t.Fatalf("prod's records (%d): %+v", code, recs.Items)
	}
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(events.Promoted.Filter()))
	if err != nil {
		t.Fatal(err)
	}
	if got := info.State.Subjects[events.Promoted.Subject(recs.Items[0].RunID)]; got != 1 {
		t.Fatalf("%d promoted events for the prod run, want 1", got)
	}
	if !e2etest.TagExists(t, prod, "prod/team/app", "prod") {
		t.Fatal("prod's tag is not in prod's registry")
	}
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// serveHandler serves h on a free port until the test ends and returns its
// host:port.
func serveHandler(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// serviceProcesses runs the four services (builder, pusher, verifier,
// reporter, in that order) as real processes on bus, the reporter's API on
// api, with env added to their environment, until the test ends. It
// returns them and a JetStream connection with the streams provisioned.
func serviceProcesses(t *testing.T, b *natsBus, api string, env ...string) ([]*process, jetstream.JetStream) {
	t.Helper()
	bins := serviceBinaries(t)
	logs, err := os.Create(filepath.Join(t.TempDir(), "services.log"))
	if err != nil {
		t.Fatal(err)
	}
	env = append(append(os.Environ(), "DIGESTLINE_NATS_URL="+b.url(), "DIGESTLINE_LOG_LEVEL=warn", "DIGESTLINE_HEALTH_ADDR=127.0.0.1:0",
		"DIGESTLINE_ACK_WAIT="+crashLoop.String(), "DOCKER_CONFIG="+t.TempDir(), "OTEL_EXPORTER_OTLP_ENDPOINT="), env...)
	var procs []*process
	for _, name := range []string{"builder", "pusher", "verifier", "reporter"} {
		var args []string
		if name == "reporter" {
			args = []string{"-api-addr", api}
		}
		p := newProcess(bins, name, env, logs, args...)
		p.start(t)
		procs = append(procs, p)
	}
	t.Cleanup(func() {
		for _, p := range procs {
			p.kill()
		}
		_ = logs.Close()
	})
	nc, js, err := service.Connect(b.url(), "chaos-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if err := bus.Provision(context.Background(), js, bus.ProvisionOptions{}); err != nil {
		t.Fatal(err)
	}
	return procs, js
}

// TestChaosShipsToOneTagWithThePusherKilled: ships to one tag, 4 at a time
// (make bench: 200, 8 at a time), through the services as processes, and
// the pusher is SIGKILLed once the tag has first moved, and restarted. A
// move it held when it died is taken over by its redelivery; every run is
// still promoted or superseded, the tag at the newest request's digest.
func TestChaosShipsToOneTagWithThePusherKilled(t *testing.T) {
	b := newNATSBus(t)
	host := e2etest.EmbeddedRegistry(t)
	apiAddr := fmt.Sprintf("127.0.0.1:%d", e2etest.FreePort(t))
	procs, js := serviceProcesses(t, b, apiAddr)
	target := host + "/team/app:dev"
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		for {
			req, _ := http.NewRequest(http.MethodHead, "http://"+host+"/v2/team/app/manifests/dev", nil)
			req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json")
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				_ = resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
		procs[1].kill() // the pusher
		time.Sleep(300 * time.Millisecond)
		procs[1].start(t)
	}()
	n, at := e2etest.OneTagRuns(t)
	ids := e2etest.ShipToOneTag(t, bus.NewBus(js, "/digestline/test/chaos"), target, n, at)
	<-killed
	promoted, superseded := e2etest.LandedInOrder(t, "http://"+apiAddr, target, "dev", ids)
	t.Logf("%d promoted, %d superseded, the pusher killed once", promoted, superseded)
}
