package reporter_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/registry/registrytest"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/services/reporter"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/uuid"
)

// harness is a reporter on an embedded NATS server and an in-memory
// registry; the test plays the pusher and the verifier.
type harness struct {
	srv  *bustest.Server
	bus  *bus.Bus
	repo string // registry/team/app
	api  string
}

func client() *registry.Client {
	return registry.New(registry.WithKeychain(authn.NewMultiKeychain()), registry.WithRetries(1, time.Millisecond))
}

func start(t *testing.T, configure ...func(*reporter.Config)) *harness {
	t.Helper()
	h, _ := startOn(t, bustest.NewServer(t), registrytest.Memory(t, true), configure...)
	return h
}

// startOn runs a reporter on srv for the repository team/app of the
// registry at addr until the test ends, or until the stop it returns.
func startOn(t *testing.T, srv *bustest.Server, addr string, configure ...func(*reporter.Config)) (*harness, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cfg := reporter.Config{Deps: service.Deps{JetStream: srv.JetStream, Registry: client()}, Listener: ln}
	for _, c := range configure {
		c(&cfg)
	}
	go func() {
		done <- reporter.Run(ctx, cfg)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("reporter: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return &harness{srv: srv, bus: bus.NewBus(srv.JetStream, "/digestline/test/verifier"),
		repo: addr + "/team/app", api: "http://" + ln.Addr().String()}, stop
}

// push pushes a small image to repo:tag and returns its digest.
func (h *harness) push(t *testing.T, tag, content string) string {
	t.Helper()
	return registrytest.Push(t, client(), h.repo+":"+tag, content).Root.Digest.String()
}

// verified publishes the verify.completed of a build run for digest at
// repo:tag, as the verifier does, and returns the run.
func (h *harness) verified(t *testing.T, tag, digest, to string) string {
	t.Helper()
	run := uuid.NewString()
	if _, err := h.bus.Start(context.Background(), events.VerifyCompleted, run, "app", events.VerifyResult{
		Target: h.repo + ":" + tag, Digest: digest, PromoteTo: to, Checks: []string{"[VERIFY] digest match"}, Evidence: events.Evidence{Request: "req-" + run},
	}); err != nil {
		t.Fatal(err)
	}
	return run
}

// moveAndReverify plays the pusher and the verifier for the run's
// approval: the environment's tag moves, the digest is verified again.
func (h *harness) moveAndReverify(t *testing.T, run string, evs []bustest.Event) {
	t.Helper()
	a := bustest.Last[events.Approval](t, evs, events.PromotionApproved)
	moveTag(t, h.repo, a.Tag, a.Digest)
	h.reverified(t, evs, "")
}

// reverified emits the verify.completed that answers the run's
// promotion.approved (among evs) once its tag moved: under key, a new
// event each.
func (h *harness) reverified(t *testing.T, evs []bustest.Event, key string) {
	t.Helper()
	a := bustest.Last[events.Approval](t, evs, events.PromotionApproved)
	var approved cloudevents.Event
	for _, e := range evs {
		if e.Name == events.PromotionApproved {
			approved = e.Event
		}
	}
	if _, err := h.bus.Emit(context.Background(), approved, events.VerifyCompleted, key, events.VerifyResult{
		Target: a.Repository + ":" + a.Tag, Digest: a.Digest, Checks: []string{"[VERIFY] digest match"}, Promotion: &a, Evidence: a.Evidence,
	}); err != nil {
		t.Fatal(err)
	}
}

// moveTag points repo:tag at digest (a manifest the repository holds).
func moveTag(t *testing.T, repo, tag, digest string) {
	t.Helper()
	r, err := client().Open(context.Background(), mustRepo(t, repo), true)
	if err != nil {
		t.Fatal(err)
	}
	body, desc, err := r.GetManifest(context.Background(), digest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.PutManifest(context.Background(), tag, desc.MediaType, body); err != nil {
		t.Fatal(err)
	}
}

func mustRepo(t *testing.T, s string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (h *harness) history(t *testing.T) []api.HistoryEntry {
	t.Helper()
	resp, err := http.Get(h.api + "/v1/history")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out api.Page[api.HistoryEntry]
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Items
}

// TestShippingTheHeldDigestAgainRecordsNoSecondPromotion: a second run of
// the digest dev already holds ends promoted, with the record as it was
// (previous none, the first run's), and the history holds one promotion.
func TestShippingTheHeldDigestAgainRecordsNoSecondPromotion(t *testing.T) {
	t.Parallel()
	h := start(t)
	d := h.push(t, "1", "same")
	var runs []string
	for range 2 {
		run := h.verified(t, "1", d, "")
		h.moveAndReverify(t, run, h.srv.WaitRun(t, run, events.PromotionApproved, events.PromotionRejected))
		p := bustest.Last[events.Promotion](t, h.srv.WaitRun(t, run, events.Promoted), events.Promoted)
		if p.Digest != d || p.PreviousDigest != "" || p.Environment != "dev" {
			t.Fatalf("run %d promoted %+v", len(runs)+1, p)
		}
		runs = append(runs, run)
	}
	hist := h.history(t)
	if len(hist) != 1 || hist[0].Promotion == nil || hist[0].RunID != runs[0] {
		t.Fatalf("history %+v, want the first run's promotion alone", hist)
	}

	// A new digest is a promotion, whose previous is the held one.
	d2 := h.push(t, "2", "new")
	run := h.verified(t, "2", d2, "")
	h.moveAndReverify(t, run, h.srv.WaitRun(t, run, events.PromotionApproved, events.PromotionRejected))
	if p := bustest.Last[events.Promotion](t, h.srv.WaitRun(t, run, events.Promoted), events.Promoted); p.PreviousDigest != d {
		t.Fatalf("previous %q, want %s", p.PreviousDigest, d)
	}
	if n := len(h.history(t)); n != 2 {
		t.Fatalf("%d history entries, want 2", n)
	}
}

// TestADigestVerifiedWithoutACommitTakesTheFirstOneNamed: a digest first
// built from a directory (no commit), built again from a git commit, is
// then promoted as built from that commit; a third build, from another
// commit of the same bytes, changes nothing.
func TestADigestVerifiedWithoutACommitTakesTheFirstOneNamed(t *testing.T) {
	t.Parallel()
	h := start(t)
	d := h.push(t, "1", "same")
	commits := []string{"", strings.Repeat("a", 40), strings.Repeat("b", 40)}
	for i, commit := range commits {
		run := uuid.NewString()
		if _, err := h.bus.Start(context.Background(), events.VerifyCompleted, run, "app", events.VerifyResult{
			Target: h.repo + ":1", Digest: d, Commit: commit, Checks: []string{"[VERIFY] digest match"}, Evidence: events.Evidence{Request: "req-" + run},
		}); err != nil {
			t.Fatal(err)
		}
		evs := h.srv.WaitRun(t, run, events.PromotionApproved, events.PromotionRejected)
		a := bustest.Last[events.Approval](t, evs, events.PromotionApproved)
		if want := commits[min(i, 1)]; a.Commit != want {
			t.Fatalf("build %d (commit %q): approval names commit %q, want %q", i+1, commit, a.Commit, want)
		}
		h.moveAndReverify(t, run, evs)
		h.srv.WaitRun(t, run, events.Promoted)
	}
}

// TestGatesRejectWithTheirName: each gate refuses what it guards, the
// rejection naming it, and nothing is approved.
func TestGatesRejectWithTheirName(t *testing.T) {
	t.Parallel()
	h := start(t)
	d := h.push(t, "1", "gated")
	request := func(t *testing.T, digest, to string) string {
		run := uuid.NewString()
		if _, err := h.bus.Start(context.Background(), events.PromotionRequested, run, "app", events.PromotionRequest{Repository: h.repo, Digest: digest, To: to}); err != nil {
			t.Fatal(err)
		}
		return run
	}
	for _, tc := range []struct {
		name, gate string
		run        func(t *testing.T) string
	}{
		{"an environment outside the chain", reporter.GateEnvironment, func(t *testing.T) string { return h.verified(t, "1", d, "qa") }},
		{"a digest never verified", reporter.GateVerified, func(t *testing.T) string { return request(t, "sha256:"+strings.Repeat("1", 64), "dev") }},
		{"skipping an environment", reporter.GatePreviousEnv, func(t *testing.T) string { return h.verified(t, "1", d, "staging") }},
		{"a tag moved by hand", reporter.GateTagDrift, func(t *testing.T) string {
			other := h.push(t, "other", "elsewhere")
			moveTag(t, h.repo, "dev", other)
			return request(t, d, "dev")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs := h.srv.WaitRun(t, tc.run(t), events.PromotionRejected, events.PromotionApproved)
			if bustest.Count(evs, events.PromotionApproved) != 0 {
				t.Fatal("approved")
			}
			if r := bustest.Last[events.Rejection](t, evs, events.PromotionRejected); r.Gate != tc.gate || r.Reason == "" || r.Hint == "" {
				t.Fatalf("rejection %+v, want gate %s with a reason and a hint", r, tc.gate)
			}
		})
	}
}
