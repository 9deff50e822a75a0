package e2etest

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/dev"
	"github.com/digestline/digestline/cmd/digestline/internal/ship"
	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/digestline/digestline/pkg/telemetry"
	"github.com/digestline/digestline/services/reporter"
	"github.com/google/go-containerregistry/pkg/authn"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// Stack is a running `digestline dev` for one test.
type Stack struct {
	*dev.Env
	Spans *tracetest.SpanRecorder
	Bus   *bus.Bus
}

type Option func(*dev.Config)

func WithDataDir(dir string) Option { return func(c *dev.Config) { c.DataDir = dir } }

func WithRegistryWrapper(w func(http.Handler) http.Handler) Option {
	return func(c *dev.Config) { c.WrapRegistry = w }
}

func WithRegistryAddr(addr string) Option { return func(c *dev.Config) { c.RegistryAddr = addr } }

func WithRegistryClient(rc *registry.Client) Option {
	return func(c *dev.Config) { c.Registry = rc }
}

// WithTelemetry gives the stack the logger, traces and metrics
// `digestline dev` sets up (telemetry.Setup) instead of a span recorder:
// Stack.Spans then records nothing.
func WithTelemetry(tel *telemetry.Telemetry) Option {
	return func(c *dev.Config) {
		c.Logger, c.TracerProvider, c.MeterProvider, c.Metrics = tel.Logger, tel.TracerProvider, tel.MeterProvider, tel.Metrics
	}
}

// StartStack starts everything on free ports; it stops at cleanup, or when
// the returned stop is called.
func StartStack(t testing.TB, opts ...Option) (*Stack, func()) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	cfg := dev.Config{
		DataDir: t.TempDir(), NATSPort: -1, RegistryAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0",
		TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)),
	}
	for _, o := range opts {
		o(&cfg)
	}
	tp := cfg.TracerProvider
	if cfg.Registry == nil {
		// Tests never read the machine's docker credentials.
		cfg.Registry = registry.New(registry.WithKeychain(authn.NewMultiKeychain()), registry.WithTracerProvider(tp), registry.WithRetries(2, time.Millisecond))
	}
	ctx, cancel := context.WithCancel(context.Background())
	env, err := dev.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := env.Wait(); err != nil {
				t.Errorf("dev environment stopped with: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return &Stack{Env: env, Spans: rec, Bus: bus.NewBus(env.JetStream, "/digestline/test/ship", bus.WithTracerProvider(tp))}, stop
}

// SourceDir writes a small tree to ship.
func SourceDir(t testing.TB, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "app"), []byte("#!/bin/sh\necho "+content+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data.txt"), bytes.Repeat([]byte(content), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func (s *Stack) Ship(t testing.TB, dir, repo string) (ship.Result, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	res, err := ship.Ship(ctx, s.Bus, ship.Request{Dir: dir, Target: s.RegistryAddr + "/" + repo, Spec: events.BuildSpec{Entrypoint: []string{"/bin/app"}}}, &out)
	return res, out.String(), err
}

// GetJSON GETs the stack's API at path (GetJSON).
func (s *Stack) GetJSON(t testing.TB, path string, v any) int {
	t.Helper()
	return GetJSON(t, s.APIURL+path, v)
}

// RunEvents waits until the run's terminal event is indexed and returns the
// run's events in order.
func (s *Stack) RunEvents(t *testing.T, runID string) []map[string]any {
	t.Helper()
	var evs []map[string]any
	WaitFor(t, "the run's terminal event in /v1/runs", func() bool {
		evs = nil
		if s.GetJSON(t, "/v1/runs/"+runID, &evs) != http.StatusOK || len(evs) == 0 {
			return false
		}
		n, _ := events.NameOfType(evs[len(evs)-1]["type"].(string))
		return n.Terminal()
	})
	return evs
}

func Names(evs []map[string]any) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		n, _ := events.NameOfType(e["type"].(string))
		out[i] = string(n)
	}
	return out
}

func DataOf[T any](t *testing.T, ev map[string]any) T {
	t.Helper()
	b, _ := json.Marshal(ev["data"])
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func WaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WithSigningKey signs every build and promotion with a new key written to
// dir (digestline.key, digestline.pub), which every service trusts.
func WithSigningKey(t testing.TB, dir string) Option {
	t.Helper()
	signer, err := sign.Generate(filepath.Join(dir, "digestline.key"), filepath.Join(dir, "digestline.pub"), false)
	if err != nil {
		t.Fatal(err)
	}
	own, err := sign.NewVerifier(signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	return func(c *dev.Config) {
		c.Signer, c.TrustedKeys = signer, []sign.Verifier{own}
		c.Reporter.Signer, c.Reporter.Keys = signer, []sign.Verifier{own}
	}
}

func WithReporter(f func(*reporter.Config)) Option {
	return func(c *dev.Config) { f(&c.Reporter) }
}

// givenPorts are the ports freePort has handed out: the kernel may offer a
// port it just freed again, and two servers of one test must not race for
// the same one.
var givenPorts sync.Map

// FreePort is a loopback port that nothing listens on, and that no other
// caller in this process got.
func FreePort(t *testing.T) int {
	t.Helper()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		if _, taken := givenPorts.LoadOrStore(port, true); !taken {
			return port
		}
	}
}

// GetJSON GETs u and returns the status; a 200's body is decoded into v
// (nil: not read). Any other answer is the API's error ({"error": …}),
// which is not a v: the caller reads the status.
func GetJSON(t testing.TB, u string, v any) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil && resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
	}
	return resp.StatusCode
}

// ShipWith ships a tree, with an SBOM when sbom is set, and returns the
// digest promoted to the first environment.
func (s *Stack) ShipWith(t *testing.T, content, repo string, sbom bool) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	res, err := ship.Ship(ctx, s.Bus, ship.Request{Dir: SourceDir(t, content), Target: s.RegistryAddr + "/" + repo,
		Spec: events.BuildSpec{Entrypoint: []string{"/bin/app"}, SBOM: sbom}}, &out)
	if err != nil {
		t.Fatalf("ship %s: %v\n%s", content, err, out.String())
	}
	return res.Promotion.Digest
}

// Current is the environment's record for repo ("" when there is none).
func (s *Stack) Current(t *testing.T, env, repo string) string {
	t.Helper()
	var recs api.Page[events.Promotion]
	if s.GetJSON(t, "/v1/promotions?env="+env+"&repo="+repo, &recs) != http.StatusOK {
		t.Fatal("GET /v1/promotions failed")
	}
	if len(recs.Items) == 0 {
		return ""
	}
	return recs.Items[0].Digest
}

// Post sends body to the API with the bearer token (none when "") and
// returns the status.
func (s *Stack) Post(t *testing.T, path, token, body string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.APIURL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// PushStages are the stages of a push, in order.
func PushStages() []string {
	return []string{events.StageAuth, events.StageManifestCheck, events.StageBlobCheck, events.StageMount,
		events.StageUpload, events.StageManifestPublish, events.StageTagUpdate, events.StageReferrers}
}

// ReferrerTypes asks the embedded registry's referrers API which artifact
// types are attached to repo@digest.
func (s *Stack) ReferrerTypes(t *testing.T, repo, digest string) []string {
	t.Helper()
	resp, err := http.Get("http://" + s.RegistryAddr + "/v2/" + repo + "/referrers/" + digest)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var idx struct {
		Manifests []struct {
			ArtifactType string `json:"artifactType"`
		} `json:"manifests"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&idx); err != nil {
		t.Fatalf("referrers of %s@%s: %v", repo, digest, err)
	}
	var types []string
	for _, m := range idx.Manifests {
		types = append(types, m.ArtifactType)
	}
	return types
}
