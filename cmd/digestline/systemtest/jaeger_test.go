package systemtest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/service"
	"github.com/olareg/olareg"
	olaregconfig "github.com/olareg/olareg/config"
)

// jaegerConfig is Jaeger v2 all-in-one in memory: OTLP in, the query API
// out, on the given ports.
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [jaeger_storage_exporter]}
  telemetry:
    metrics: {level: none}
    logs: {level: warn}
extensions:
  healthcheckv2: {use_v2: true, http: {endpoint: "127.0.0.1:%d"}}
  jaeger_query:
    storage: {traces: memstore}
    http: {endpoint: "127.0.0.1:%d"}
    grpc: {endpoint: "127.0.0.1:%d"}
  jaeger_storage:
    backends: {memstore: {memory: {max_traces: 10000}}}
receivers:
  otlp:
    protocols: {grpc: {endpoint: "127.0.0.1:%d"}, http: {endpoint: "127.0.0.1:%d"}}
processors:
  batch: {timeout: 100ms}
exporters:
  jaeger_storage_exporter: {trace_storage: memstore}
`

// jaegerTrace is a trace as Jaeger's query API (/api/traces) returns it.
type jaegerTrace struct {
	TraceID string `json:"traceID"`
	Spans   []struct {
		OperationName string `json:"operationName"`
		ProcessID     string `json:"processID"`
		Tags          []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"tags"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

// services is the set of service names with spans in the trace.
func (tr jaegerTrace) services() []string {
	var names []string
	for _, sp := range tr.Spans {
		if n := tr.Processes[sp.ProcessID].ServiceName; !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// tags is the tags of the trace's spans named op, merged; nil when there
// is no such span.
func (tr jaegerTrace) tags(op string) map[string]any {
	var tags map[string]any
	for _, sp := range tr.Spans {
		if sp.OperationName == op {
			if tags == nil {
				tags = map[string]any{}
			}
			for _, tag := range sp.Tags {
				tags[tag.Key] = tag.Value
			}
		}
	}
	return tags
}

// startJaeger runs Jaeger on free ports and returns its OTLP gRPC endpoint
// and its query API's base URL, once it is healthy.
func startJaeger(t *testing.T) (otlp, query string) {
	t.Helper()
	health, queryPort, otlpGRPC := e2etest.FreePort(t), e2etest.FreePort(t), e2etest.FreePort(t)
	cfg := filepath.Join(t.TempDir(), "jaeger.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, jaegerConfig, health, queryPort, e2etest.FreePort(t), otlpGRPC, e2etest.FreePort(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	logs, err := os.Create(filepath.Join(t.TempDir(), "jaeger.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(e2etest.PeerTool(t, "jaeger"), "--config", cfg)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); _ = logs.Close() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/status", health))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logs.Name())
			t.Fatalf("jaeger is not healthy after 30 s: %v\n%s", err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Sprintf("http://127.0.0.1:%d", otlpGRPC), fmt.Sprintf("http://127.0.0.1:%d", queryPort)
}

// findTraces asks Jaeger for the traces of service with a span tagged with
// the run id.
func findTraces(t *testing.T, query, service, runID string) []jaegerTrace {
	t.Helper()
	q := url.Values{"service": {service}, "tags": {fmt.Sprintf(`{"digestline.run_id":%q}`, runID)}, "lookback": {"1h"}, "limit": {"20"}}
	resp, err := http.Get(query + "/api/traces?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Data []jaegerTrace `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("jaeger /api/traces: %d: %v", resp.StatusCode, err)
	}
	return body.Data
}

// TestJaegerShowsOneTracePerRun runs the four services as processes that
// export OTLP to a real Jaeger, and sends two GitHub webhooks: one run that
// ends promoted and one whose registry refuses the upload. Jaeger's query
// API must return, for each run, one trace that starts at the webhook and
// holds the spans of all four services (for the promoted run) and of every
// push stage; the failed run's upload span is an error of class auth.
func TestJaegerShowsOneTracePerRun(t *testing.T) {
	otlp, query := startJaeger(t)
	b := newNATSBus(t)

	// A registry that refuses uploads to denied/*, as one whose credential
	// lacks push rights would.
	olr := olareg.New(olaregconfig.Config{Storage: olaregconfig.ConfigStorage{StoreType: olaregconfig.StoreMem}})
	t.Cleanup(func() { _ = olr.Close() })
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v2/denied/") && strings.Contains(r.URL.Path, "/blobs/uploads") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}`))
			return
		}
		olr.ServeHTTP(w, r)
	}))
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")

	repo, sha := e2etest.GitRepo(t, "traced")
	e2etest.Git(t, repo, "tag", "v1.0.0") // the tag the pushes below announce
	rules := filepath.Join(t.TempDir(), "webhooks.yaml")
	if err := os.WriteFile(rules, fmt.Appendf(nil, "repositories:\n- {match: acme/app, git: %q, image: %s/acme/app, promoteTo: dev}\n- {match: acme/denied, git: %q, image: %s/denied/app}\n",
		"file://"+repo, host, "file://"+repo, host), 0o644); err != nil {
		t.Fatal(err)
	}
	webhookAddr, apiAddr := fmt.Sprintf("127.0.0.1:%d", e2etest.FreePort(t)), fmt.Sprintf("127.0.0.1:%d", e2etest.FreePort(t))
	logs, err := os.Create(filepath.Join(t.TempDir(), "services.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	env := append(os.Environ(), "DIGESTLINE_NATS_URL="+b.url(), "DIGESTLINE_LOG_LEVEL=warn", "DIGESTLINE_HEALTH_ADDR=127.0.0.1:0",
		"DOCKER_CONFIG="+t.TempDir(), "DIGESTLINE_WEBHOOK_SECRET="+e2etest.WebhookSecret,
		"OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="+otlp, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc", "OTEL_BSP_SCHEDULE_DELAY=100")
	bins := serviceBinaries(t)
	procs := []*process{
		newProcess(bins, "builder", env, logs, "--webhook-addr", webhookAddr, "--webhook-config", rules),
		newProcess(bins, "pusher", env, logs),
		newProcess(bins, "verifier", env, logs),
		newProcess(bins, "reporter", env, logs, "--api-addr", apiAddr),
	}
	for _, p := range procs {
		p.start(t)
	}
	stopAll := func() {
		for _, p := range procs {
			p.stop(t)
		}
	}
	t.Cleanup(stopAll)
	e2etest.WaitFor(t, "the builder's webhooks and the reporter's API", func() bool {
		conn, err := net.Dial("tcp", webhookAddr)
		if err != nil {
			return false
		}
		_ = conn.Close()
		return service.Probe("http://"+apiAddr+"/readyz") == nil
	})

	runs := map[string]string{} // repository → run id
	for _, name := range []string{"acme/app", "acme/denied"} {
		body := e2etest.GitPushBody(name, "v1.0.0", sha)
		code, acc := e2etest.SendGitHub(t, "http://"+webhookAddr+"/webhooks/github", e2etest.SignGitHub(e2etest.WebhookSecret, body), "trace-"+name, body)
		if code != http.StatusAccepted {
			t.Fatalf("webhook for %s: %d", name, code)
		}
		runs[name] = acc.RunID
	}
	for name, want := range map[string]events.Name{"acme/app": events.Promoted, "acme/denied": events.PushFailed} {
		var last events.Name
		e2etest.WaitFor(t, name+"'s run to end", func() bool {
			var evs []map[string]any
			resp, err := http.Get("http://" + apiAddr + "/v1/runs/" + runs[name])
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			if json.NewDecoder(resp.Body).Decode(&evs) != nil || len(evs) == 0 {
				return false
			}
			last, _ = events.NameOfType(evs[len(evs)-1]["type"].(string))
			return last.Terminal()
		})
		if last != want {
			t.Fatalf("%s's run ended with %s, want %s", name, last, want)
		}
	}
	stopAll() // a graceful stop flushes every span still batched

	// Spans reach Jaeger in batches: ask until it holds all that is expected,
	// and report what is missing if it never does.
	var problems []string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if problems = traceProblems(t, query, runs["acme/app"], runs["acme/denied"]); len(problems) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s, Jaeger's traces of the runs:\n%s", strings.Join(problems, "\n"))
		}
	}
}

// traceProblems is what Jaeger's traces of a promoted run and of a run
// whose upload was refused lack.
func traceProblems(t *testing.T, query, promotedRun, failedRun string) []string {
	var problems []string
	p, f := findTraces(t, query, "digestline-builder", promotedRun), findTraces(t, query, "digestline-builder", failedRun)
	if len(p) != 1 || len(f) != 1 {
		return []string{fmt.Sprintf("the webhook spans of the runs are in %d and %d traces, want 1 each", len(p), len(f))}
	}
	promoted, failed := p[0], f[0]
	if got, want := promoted.services(), []string{"digestline-builder", "digestline-pusher", "digestline-reporter", "digestline-verifier"}; !slices.Equal(got, want) {
		problems = append(problems, fmt.Sprintf("the promoted run's trace has spans of %v, want %v", got, want))
	}
	for _, op := range append([]string{"webhook github", "reporter process verify.completed"}, stageSpans(e2etest.PushStages())...) {
		if promoted.tags(op) == nil {
			problems = append(problems, fmt.Sprintf("the promoted run's trace has no %q span", op))
		}
	}
	// Every service's spans of the run are in that one trace.
	for _, svc := range promoted.services() {
		if trs := findTraces(t, query, svc, promotedRun); len(trs) != 1 || trs[0].TraceID != promoted.TraceID {
			problems = append(problems, fmt.Sprintf("%s's spans of the run are in %d traces, want only %s", svc, len(trs), promoted.TraceID))
		}
	}

	// The failed push: the upload span is the error, with its class and
	// hint, and no stage runs after it.
	for _, op := range stageSpans(e2etest.PushStages()[:5]) {
		if failed.tags(op) == nil {
			problems = append(problems, fmt.Sprintf("the failed run's trace has no %q span", op))
		}
	}
	upload := failed.tags("push " + events.StageUpload)
	if upload["error"] != true || upload["otel.status_code"] != "ERROR" || upload["error.type"] != string(failure.Auth) || upload["digestline.error.hint"] == "" {
		problems = append(problems, fmt.Sprintf("the failed upload's span has tags %v, want an error of class auth with a hint", upload))
	}
	if failed.tags("push "+events.StageManifestPublish) != nil {
		problems = append(problems, "the failed run went on past the upload")
	}
	return problems
}

func stageSpans(stages []string) []string {
	ops := make([]string, len(stages))
	for i, s := range stages {
		ops[i] = "push " + s
	}
	return ops
}
