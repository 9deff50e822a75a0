package systemtest

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/cmd/digestline/internal/ship"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/service"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
)

// natsCluster starts three JetStream servers routed into one cluster and
// returns them with the client URL list.
func natsCluster(t *testing.T) ([]*server.Server, string) {
	var routes []string
	clusterPorts := []int{e2etest.FreePort(t), e2etest.FreePort(t), e2etest.FreePort(t)}
	for _, p := range clusterPorts {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	var nodes []*server.Server
	var urls []string
	for i, cp := range clusterPorts {
		opts := &server.Options{ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
			NoLog: true, NoSigs: true, Cluster: server.ClusterOpts{Name: "digestline", Host: "127.0.0.1", Port: cp}, Routes: server.RoutesFromStr(strings.Join(routes, ","))}
		ns, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go ns.Start()
		t.Cleanup(ns.Shutdown)
		nodes = append(nodes, ns)
	}
	for _, ns := range nodes {
		if !ns.ReadyForConnections(20 * time.Second) {
			t.Fatal("a cluster node did not start")
		}
		urls = append(urls, ns.ClientURL())
	}
	return nodes, strings.Join(urls, ",")
}

// TestRunsSurviveLosingAClusterNode runs the pipeline on a 3-node JetStream
// cluster with every stream and bucket replicated three times, and shuts a
// node down in the middle of a run's upload: every run still ends promoted.
func TestRunsSurviveLosingAClusterNode(t *testing.T) {
	nodes, urls := natsCluster(t)
	nc, js, err := service.Connect(urls, "test-cluster")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	provisionR3(t, js)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	info, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if si, err := info.Info(ctx); err != nil || si.Config.Replicas != 3 || si.Cluster == nil || len(si.Cluster.Replicas) != 2 {
		t.Fatalf("the stream is not replicated three times: %+v %v", si, err)
	}
	// Reads of the buckets, the index and the run log go to the leader: a
	// lagging replica would answer a direct get with an older value.
	for _, name := range []string{"KV_" + events.VerifiedBucket, "KV_" + events.RunsBucket, events.IndexStream, events.RunLogStream} {
		if st, err := js.Stream(ctx, name); err != nil || st.CachedInfo().Config.AllowDirect {
			t.Errorf("%s: reads may come from a lagging replica (allow_direct): %v", name, err)
		}
	}

	killed := make(chan struct{})
	host := registryOnce(t, "/node3/blobs/uploads/", func() {
		// The node the stream leads from, so a new leader is elected mid-run.
		si, err := info.Info(context.Background())
		victim := nodes[0]
		for _, n := range nodes {
			if err == nil && si.Cluster != nil && n.Name() == si.Cluster.Leader {
				victim = n
			}
		}
		victim.Shutdown()
		close(killed)
	})
	runServices(t, urls, registry.New(registry.WithKeychain(authn.NewMultiKeychain())), bus.ProvisionOptions{Replicas: 3})

	shipBus := bus.NewBus(js, "/digestline/test/cluster")
	g, gctx := errgroup.WithContext(context.Background())
	for i := 1; i <= 6; i++ {
		if i == 4 {
			<-killed
		}
		dir := e2etest.SourceDir(t, fmt.Sprintf("cluster %d", i))
		g.Go(func() error {
			ctx, cancel := context.WithTimeout(gctx, 2*time.Minute)
			defer cancel()
			if _, err := shipUntilPromoted(ctx, shipBus, ship.Request{Dir: dir, Target: fmt.Sprintf("%s/team/node%d:1", host, i)}); err != nil {
				return fmt.Errorf("run %d: %w", i, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		logConsumers(t, js)
		dumpGoroutines(t)
		t.Fatal(err)
	}
}

// dumpGoroutines writes every goroutine's stack (the services run in this
// process) to a file that outlives the test, for a run that stalled.
func dumpGoroutines(t *testing.T) {
	f, err := os.CreateTemp("", "digestline-stall-*.txt")
	if err != nil {
		t.Logf("goroutines: %v", err)
		return
	}
	defer f.Close()
	if err := pprof.Lookup("goroutine").WriteTo(f, 2); err != nil {
		t.Logf("goroutines: %v", err)
		return
	}
	t.Logf("every goroutine's stack: %s", f.Name())
}

// logConsumers logs the state of the events' consumers, for a run that
// stalled: what each delivered, holds unacknowledged, has redelivered,
// and which node leads it.
func logConsumers(t *testing.T, js jetstream.JetStream) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Logf("consumers: %v", err)
		return
	}
	list := s.ListConsumers(ctx)
	for info := range list.Info() {
		leader := ""
		if info.Cluster != nil {
			leader = info.Cluster.Leader
		}
		t.Logf("consumer %s (leader %s): delivered %d, ack floor %d, pending %d, ack pending %d, redelivered %d, waiting pulls %d",
			info.Name, leader, info.Delivered.Stream, info.AckFloor.Stream, info.NumPending, info.NumAckPending, info.NumRedelivered, info.NumWaiting)
	}
	if err := list.Err(); err != nil {
		t.Logf("consumers: %v", err)
	}
}

// provisionR3 provisions every stream and bucket replicated three times,
// once the cluster has its meta leader.
func provisionR3(t *testing.T, js jetstream.JetStream) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		err := bus.Provision(actx, js, bus.ProvisionOptions{Replicas: 3})
		acancel()
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("provision R3: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestShipsToOneTagLandInOrderOnACluster: ships to one tag, 4 at a time,
// through two replicas of each service on a 3-node cluster, land as on
// one node (TestShipsToOneTagLandInOrder): each promoted or superseded,
// the tag and the record at the newest request's digest, the history's
// chain unbroken.
func TestShipsToOneTagLandInOrderOnACluster(t *testing.T) {
	_, urls := natsCluster(t)
	nc, js, err := service.Connect(urls, "test-cluster")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	provisionR3(t, js)
	reg := registry.New(registry.WithKeychain(authn.NewMultiKeychain()))
	apiURL := runServices(t, urls, reg, bus.ProvisionOptions{Replicas: 3})
	runServices(t, urls, reg, bus.ProvisionOptions{Replicas: 3}) // the second replica of each
	target := e2etest.EmbeddedRegistry(t) + "/team/app:dev"
	n, at := e2etest.OneTagRuns(t)
	ids := e2etest.ShipToOneTag(t, bus.NewBus(js, "/digestline/test/cluster"), target, n, at)
	promoted, superseded := e2etest.LandedInOrder(t, apiURL, target, "dev", ids)
	t.Logf("%d promoted, %d superseded", promoted, superseded)
}

// TestDeployedNATSConfigIsAClusterOfThree reads deploy/nats/cluster.conf as
// nats-server does.
func TestDeployedNATSConfigIsAClusterOfThree(t *testing.T) {
	t.Setenv("SERVER_NAME", "nats-1")
	t.Setenv("DIGESTLINE_NATS_USER", "digestline")
	t.Setenv("DIGESTLINE_NATS_PASSWORD", "secret-from-the-deployment")
	opts, err := server.ProcessConfigFile("../../../deploy/nats/cluster.conf")
	if err != nil {
		t.Fatal(err)
	}
	if opts.ServerName != "nats-1" || !opts.JetStream || opts.Cluster.Name != "digestline" || len(opts.Routes) != 3 ||
		len(opts.Users) != 1 || opts.Users[0].Username != "digestline" {
		t.Fatalf("config %+v", opts)
	}
}
