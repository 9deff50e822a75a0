//go:build chaos

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/ship"
	"github.com/digestline/digestline/pkg/events"
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
	bus := newNATSBus(t)
	olr := olareg.New(olaregconfig.Config{Storage: olaregconfig.ConfigStorage{StoreType: olaregconfig.StoreMem}})
	t.Cleanup(func() { _ = olr.Close() })
	reg := httptest.NewServer(olr)
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")

	bins := serviceBinaries(t)
	logs, err := os.Create(filepath.Join(t.TempDir(), "services.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	env := append(os.Environ(), "DIGESTLINE_NATS_URL="+bus.url(), "DIGESTLINE_LOG_LEVEL=warn", "DIGESTLINE_HEALTH_ADDR=127.0.0.1:0",
		"DIGESTLINE_ACK_WAIT=2s", "DOCKER_CONFIG="+t.TempDir(), "OTEL_EXPORTER_OTLP_ENDPOINT=")
	var procs []*process
	for _, name := range []string{"builder", "pusher", "verifier", "reporter"} {
		var args []string
		if name == "reporter" {
			args = []string{"-api-addr", "127.0.0.1:0"}
		}
		p := newProcess(bins, name, env, logs, args...)
		p.start(t)
		procs = append(procs, p)
	}
	t.Cleanup(func() {
		for _, p := range procs {
			p.kill()
		}
	})

	nc, js, err := service.Connect(bus.url(), "chaos-ship")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := events.Provision(context.Background(), js, events.ProvisionOptions{}); err != nil {
		t.Fatal(err)
	}
	shipBus := events.NewBus(js, "/digestline/test/chaos")

	// The monkey: every 100–600 ms, SIGKILL a random service and restart it
	// 50–300 ms later, until every run is promoted.
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
		dir := sourceDir(t, fmt.Sprintf("chaos %d", i))
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
	err = g.Wait()
	close(done)
	monkey.Wait()
	kills := 0
	for _, p := range procs {
		kills += p.kills
		t.Logf("%s killed %d times", p.name, p.kills)
	}
	if err != nil {
		t.Fatal(err)
	}
	if promoted.Load() != runs || kills < 10 {
		t.Fatalf("%d of %d runs promoted with %d kills", promoted.Load(), runs, kills)
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
	var dls []events.DeadLetter
	if dls, err = events.DeadLetters(context.Background(), js, 0); err != nil || len(dls) != 0 {
		b, _ := json.Marshal(dls)
		t.Errorf("dead letters after the chaos: %s %v", b, err)
	}
}
