package pusher_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/blobstore"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/registry/registrytest"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/services/pusher"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/uuid"
)

// harness is a pusher on an embedded NATS server.
type harness struct {
	srv   *bustest.Server
	bus   *bus.Bus
	blobs *blobstore.Store
}

// start runs a pusher with reg and bus options until the test ends.
func start(t *testing.T, reg *registry.Client, opts ...bus.Option) *harness {
	t.Helper()
	srv := bustest.NewServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- pusher.Run(ctx, pusher.Config{Deps: service.Deps{JetStream: srv.JetStream, BusOptions: opts, Registry: reg}})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("pusher: %v", err)
		}
	})
	blobs, err := blobstore.Open(context.Background(), srv.JetStream)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{srv: srv, bus: bus.NewBus(srv.JetStream, "/digestline/test/builder"), blobs: blobs}
}

func client(opts ...registry.Option) *registry.Client {
	return registry.New(append([]registry.Option{registry.WithKeychain(authn.NewMultiKeychain()), registry.WithRetries(1, time.Millisecond)}, opts...)...)
}

// built builds a small image into the blob store, as the builder does, and
// publishes its build.completed for target; it returns the run id.
func (h *harness) built(t *testing.T, target, content string, guard events.TagGuard) (string, oci.Graph) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f.txt"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	p, _ := oci.ParsePlatform("")
	g, err := oci.BuildImage(context.Background(), dir, oci.ImageConfig{Cmd: []string{"/f.txt"}, Platform: p}, h.blobs)
	if err != nil {
		t.Fatal(err)
	}
	run := uuid.NewString()
	if _, err := h.bus.Start(context.Background(), events.BuildCompleted, run, "app", events.BuildResult{
		Target: target, Graph: g, BlobStore: events.BlobBucket, Tag: guard,
	}); err != nil {
		t.Fatal(err)
	}
	return run, g
}

func TestPushesABuildStageByStageAndAWarmOneUploadsNothing(t *testing.T) {
	t.Parallel()
	addr := registrytest.Memory(t, false)
	h := start(t, client())
	target := addr + "/team/app:1"
	run, g := h.built(t, target, "cold", events.TagGuard{})
	evs := h.srv.WaitRun(t, run, events.PushCompleted, events.PushFailed)
	res := bustest.Last[events.PushResult](t, evs, events.PushCompleted)
	if res.Digest != g.Root.Digest.String() || res.BlobsUploaded != 2 || res.Target != target {
		t.Fatalf("push.completed %+v", res)
	}
	var stages []string
	for _, e := range evs {
		if e.Name == events.PushStage {
			s, _ := events.Decode[events.StageReport](e.Event)
			stages = append(stages, s.Stage)
			if !strings.HasPrefix(s.Line, "[STAGE] "+s.Stage) || s.Target != target || s.Digest != res.Digest {
				t.Errorf("stage report %+v", s)
			}
		}
	}
	if want := []string{events.StageAuth, events.StageManifestCheck, events.StageBlobCheck, events.StageMount,
		events.StageUpload, events.StageManifestPublish, events.StageTagUpdate, events.StageReferrers}; strings.Join(stages, ",") != strings.Join(want, ",") {
		t.Fatalf("stages %v, want one event per stage in order %v", stages, want)
	}

	warm, _ := h.built(t, target, "cold", events.TagGuard{})
	res = bustest.Last[events.PushResult](t, h.srv.WaitRun(t, warm, events.PushCompleted, events.PushFailed), events.PushCompleted)
	if res.BlobsUploaded != 0 || res.BytesUploaded != 0 {
		t.Fatalf("a warm push uploaded %d blobs", res.BlobsUploaded)
	}
}

// TestTagDriftIsReportedAndNothingMoves: a tag found elsewhere than the
// request expects ends the run with drift.detected and a conflict.
func TestTagDriftIsReportedAndNothingMoves(t *testing.T) {
	t.Parallel()
	addr := registrytest.Memory(t, false)
	h := start(t, client())
	target := addr + "/team/app:prod"
	first, g := h.built(t, target, "one", events.TagGuard{})
	h.srv.WaitRun(t, first, events.PushCompleted)
	other := "sha256:" + strings.Repeat("0", 64)
	run, _ := h.built(t, target, "two", events.TagGuard{Expect: other})
	evs := h.srv.WaitRun(t, run, events.PushFailed, events.PushCompleted)
	f := bustest.Last[events.Failure](t, evs, events.PushFailed)
	d := bustest.Last[events.Drift](t, evs, events.DriftDetected)
	if f.Class != string(failure.Conflict) || d.Found != g.Root.Digest.String() || d.Expected != other {
		t.Fatalf("failure %+v, drift %+v", f, d)
	}
}

// TestASilentRegistryEndsTheRunVisibly: the registry accepts the
// connection and never answers; the run ends with push.failed of class
// transport, naming the registry and the timeout, by itself.
func TestASilentRegistryEndsTheRunVisibly(t *testing.T) {
	t.Parallel()
	addr := registrytest.Silent(t)
	h := start(t, client(registry.WithTimeout(300*time.Millisecond)))
	run, _ := h.built(t, addr+"/team/app:1", "silent", events.TagGuard{})
	f := bustest.Last[events.Failure](t, h.srv.WaitRun(t, run, events.PushFailed, events.PushCompleted), events.PushFailed)
	if f.Class != string(failure.Transport) || f.Stage != events.StageManifestCheck || !strings.Contains(f.Hint, addr) || !strings.Contains(f.Hint, "300ms") {
		t.Fatalf("push.failed %+v", f)
	}
}

// TestTheHandlerTimeoutEndsAPushThatTakesTooLong: whatever the registry
// timeout, the handler's own bound ends the run, naming the bound and the
// setting to raise.
func TestTheHandlerTimeoutEndsAPushThatTakesTooLong(t *testing.T) {
	t.Parallel()
	addr := registrytest.Silent(t)
	h := start(t, client(registry.WithTimeout(time.Hour)), bus.WithHandlerTimeout(500*time.Millisecond))
	run, _ := h.built(t, addr+"/team/app:1", "slow", events.TagGuard{})
	start := time.Now()
	evs := h.srv.WaitRun(t, run, events.PushFailed, events.PushCompleted)
	f := bustest.Last[events.Failure](t, evs, events.PushFailed)
	if f.Class != string(failure.Transport) || !strings.Contains(f.Hint, "DIGESTLINE_HANDLER_TIMEOUT") || !strings.Contains(f.Hint, addr) {
		t.Fatalf("push.failed %+v", f)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Fatalf("the run ended after %s", took)
	}
	if n := bustest.Count(evs, events.PushFailed); n != 1 {
		t.Fatalf("%d push.failed events", n)
	}
}

// TestAPromotionReadsTheImageOnceAndUploadsNothing: promoting a pushed
// digest in its own repository reads its manifest from the registry once
// (for the graph, the stages and the tag) and does not ask for it again,
// uploads nothing and moves the environment's tag onto it, looking at the
// tag once.
func TestAPromotionReadsTheImageOnceAndUploadsNothing(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	requests := map[string]int{} // "METHOD path"
	reg := httptest.NewServer(httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: registrytest.Memory(t, true)}))
	t.Cleanup(reg.Close)
	counting := reg.Config.Handler
	reg.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests[r.Method+" "+r.URL.Path]++
		mu.Unlock()
		counting.ServeHTTP(w, r)
	})
	addr := strings.TrimPrefix(reg.URL, "http://")
	h := start(t, client())
	pushed, g := h.built(t, addr+"/team/app:build", "promoted", events.TagGuard{})
	h.srv.WaitRun(t, pushed, events.PushCompleted)
	mu.Lock()
	clear(requests)
	mu.Unlock()

	run := uuid.NewString()
	if _, err := h.bus.Start(context.Background(), events.PromotionApproved, run, "app", events.Approval{
		Environment: "dev", Repository: addr + "/team/app", Digest: g.Root.Digest.String(), Tag: "dev",
	}); err != nil {
		t.Fatal(err)
	}
	res := bustest.Last[events.PushResult](t, h.srv.WaitRun(t, run, events.PushCompleted, events.PushFailed), events.PushCompleted)
	if res.Digest != g.Root.Digest.String() || res.BlobsUploaded != 0 || res.Target != addr+"/team/app:dev" {
		t.Fatalf("push.completed %+v", res)
	}
	mu.Lock()
	defer mu.Unlock()
	manifest := "/v2/team/app/manifests/" + g.Root.Digest.String()
	if n := requests["GET "+manifest]; n != 1 {
		t.Fatalf("the promotion read the image's manifest %d times, want once", n)
	}
	if n := requests["HEAD "+manifest]; n != 0 {
		t.Fatalf("the promotion asked %d times whether the manifest it had read is there", n)
	}
	// Nothing happens between the manifest check's look at the tag and the
	// tag's move: one look.
	if n := requests["HEAD /v2/team/app/manifests/dev"]; n != 1 {
		t.Fatalf("the promotion looked at the dev tag %d times, want once", n)
	}
}
