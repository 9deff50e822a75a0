package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/dev"
	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/registry/registrytest"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/digestline/digestline/services/builder"
	"github.com/nats-io/nats.go/jetstream"
)

const registryToken = "registry-token-0123456789"

// TestRegistryNotificationsAdmitWhatOthersPush: the CNCF distribution
// registry (Debian's docker-registry, and distribution v3), configured
// with an endpoint at digestline, notifies it of an image crane pushes;
// digestline admits it with no build of its own, waits until the other
// pipeline's cosign has signed it, proves it and promotes it to dev. The
// pushes that are evidence (cosign's .sig tag), the pipeline's own move of
// dev, and tags the rule does not take admit nothing; an unsigned image
// under a rule that requires a signature is rejected, naming the key.
func TestRegistryNotificationsAdmitWhatOthersPush(t *testing.T) {
	ci := t.TempDir()
	if out, err := e2etest.Cosign(t, ci, "generate-key-pair"); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	for _, bin := range []string{registrytest.DockerRegistry, registrytest.DistributionV3} {
		t.Run(bin, func(t *testing.T) {
			hooks, own := fmt.Sprintf("127.0.0.1:%d", e2etest.FreePort(t)), t.TempDir()
			reg := registrytest.DistributionNotifying(t, bin, "http://"+hooks+"/webhooks/registry/distribution", registryToken)
			s := admissionStack(t, hooks, fmt.Sprintf(`images:
  - match: team/signed
    tags: '^v[0-9]+'
    promoteTo: dev
    keys: [%[1]s]
    waitForSignature: 1m
  - match: team/unsigned
    keys: [%[1]s]
    waitForSignature: 1s
`, filepath.Join(ci, "cosign.pub")), e2etest.WithSigningKey(t, own))
			sign := func(d string) {
				t.Helper()
				if out, err := e2etest.Cosign(t, ci, "sign", "--key", "cosign.key", "--tlog-upload=false", "--allow-insecure-registry",
					"--allow-http-registry", "--yes", reg+"/team/signed@"+d); err != nil {
					t.Fatalf("cosign sign: %v\n%s", err, out)
				}
			}

			d := cranePush(t, reg+"/team/signed:v1", "from another pipeline")
			e2etest.RunTool(t, "crane", "tag", "--insecure", reg+"/team/signed:v1", "latest") // not a tag the rule takes
			time.Sleep(500 * time.Millisecond)                                                // the admission is waiting for its signature
			sign(d)
			awaitRecord(t, s, "dev", reg+"/team/signed", d)
			awaitSummary(t, reg+"/team/signed", d, filepath.Join(own, "digestline.pub"))
			if bin == registrytest.DockerRegistry { // pushed by skopeo, and by oras (an artifact), signed after
				cranePush(t, reg+"/team/source:1", "copied by skopeo")
				e2etest.RunTool(t, "skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "docker://"+reg+"/team/source:1", "docker://"+reg+"/team/signed:v2")
				v2 := strings.TrimSpace(e2etest.RunTool(t, "crane", "digest", "--insecure", reg+"/team/signed:v2"))
				sign(v2)
				awaitRecord(t, s, "dev", reg+"/team/signed", v2)
				file := filepath.Join(t.TempDir(), "notes.txt")
				if err := os.WriteFile(file, []byte("pushed by oras"), 0o644); err != nil {
					t.Fatal(err)
				}
				cmd := exec.Command(e2etest.PeerTool(t, "oras"), "push", "--plain-http", reg+"/team/signed:v3", "notes.txt")
				cmd.Dir = filepath.Dir(file)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("oras push: %v\n%s", err, out)
				}
				v3 := strings.TrimSpace(e2etest.RunTool(t, "crane", "digest", "--insecure", reg+"/team/signed:v3"))
				sign(v3)
				awaitRecord(t, s, "dev", reg+"/team/signed", v3)
			}

			unsigned := cranePush(t, reg+"/team/unsigned:1", "unsigned")
			run := awaitRun(t, s, reg+"/team/unsigned", unsigned)
			if run.Status != runs.Failed || run.Err == nil || !strings.Contains(run.Err.Failure.Message, "has no signature by a trusted key (key sha256:") ||
				run.AdmittedFrom != events.SenderDistribution {
				t.Errorf("the unsigned image's run: %+v %+v", run, run.Err)
			}
			// One admission per image pushed: not the .sig tags, not latest,
			// not the pipeline's own dev, nor its summaries' fallback tags.
			want := map[string]int{registrytest.DockerRegistry: 4, registrytest.DistributionV3: 2}[bin]
			if n := startsOf(t, s, events.AdmissionRequested); n != want {
				t.Errorf("%d admissions, want %d (team/signed's pushes, team/unsigned:1)", n, want)
			}
		})
	}
}

// TestRegistrySendersDocumentedPayloads: each sender's documented example
// of a push notification — Harbor's PUSH_ARTIFACT (in its default and its
// CloudEvents format), Quay's repository push, Docker Hub's webhook,
// GitHub's registry_package published — admits the image it names, under a
// rule that reads it from this test's registry; a delivery sent again is
// the same run. A distribution envelope with no token or a wrong one admits
// nothing, nor one naming a repository no rule takes, a push by digest
// alone, or cosign's signature tag.
func TestRegistrySendersDocumentedPayloads(t *testing.T) {
	hooks := fmt.Sprintf("127.0.0.1:%d", e2etest.FreePort(t))
	regAddr := fmt.Sprintf("127.0.0.1:%d", e2etest.FreePort(t))
	rules := "images:\n"
	for _, repo := range []string{"test-webhook/debian", "test-webhook/busybox", "mynamespace/repository", "svendowideit/testhook", "octo-org/hello-world", "team/app"} {
		rules += fmt.Sprintf("  - {match: %s, registry: '%s'}\n", repo, regAddr)
	}
	var logged bustest.LogBuffer
	s := admissionStack(t, hooks, rules, e2etest.WithRegistryAddr(regAddr), func(c *dev.Config) { c.Logger = slog.New(slog.NewTextHandler(&logged, nil)) })
	for _, c := range []struct{ sender, file, path, repo, header string }{
		{"harbor", "harbor.json", "/webhooks/registry/harbor", "test-webhook/debian", "Authorization: " + registryToken},
		{"harbor", "harbor-cloudevents.json", "/webhooks/registry/harbor", "test-webhook/busybox", "Authorization: Bearer " + registryToken},
		{"quay", "quay.json", "/webhooks/registry/quay?token=" + registryToken, "mynamespace/repository", ""},
		{"dockerhub", "dockerhub.json", "/webhooks/registry/dockerhub?token=" + registryToken, "svendowideit/testhook", ""},
		{"github", "github.json", "/webhooks/github", "octo-org/hello-world", "X-GitHub-Event: registry_package"},
	} {
		t.Run(c.file, func(t *testing.T) {
			d := cranePush(t, regAddr+"/"+c.repo+":latest", "pushed for "+c.sender)
			b, err := os.ReadFile(filepath.Join("testdata", "registries", c.file))
			if err != nil {
				t.Fatal(err)
			}
			body := strings.ReplaceAll(string(b), "{{digest}}", d)
			header := http.Header{}
			if k, v, ok := strings.Cut(c.header, ": "); ok {
				header.Set(k, v)
			}
			if c.sender == "github" {
				header.Set("X-GitHub-Delivery", "delivery-"+c.sender)
				header.Set("X-Hub-Signature-256", e2etest.SignGitHub(e2etest.WebhookSecret, []byte(body)))
			}
			for range 2 { // the same delivery twice: one run
				if code, out := postHook(t, s.WebhookURL+c.path, header, body); code != http.StatusAccepted || !strings.Contains(out, `"runId"`) {
					t.Fatalf("%s's example: %d %s", c.sender, code, out)
				}
			}
			awaitRecord(t, s, "dev", regAddr+"/"+c.repo, d)
			if run := awaitRun(t, s, regAddr+"/"+c.repo, d); run.AdmittedFrom != c.sender {
				t.Errorf("admitted from %q, want %s", run.AdmittedFrom, c.sender)
			}
		})
	}
	if n := startsOf(t, s, events.AdmissionRequested); n != 5 {
		t.Errorf("%d admissions for 5 deliveries sent twice each, want 5", n)
	}

	// Refused: no token, a wrong one; ignored: a repository no rule names,
	// blobs, a push by digest alone.
	envelope := `{"events": [{"id": "e-1", "timestamp": "2026-12-06T10:00:00Z", "action": "push",
		"target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:` + strings.Repeat("a", 64) + `", "repository": "%s", "url": "http://` + regAddr + `/v2/x", "tag": "%s"},
		"request": {"host": "` + regAddr + `"}}]}`
	for _, c := range []struct {
		name, auth, repo, tag string
		want                  int
		says                  string
	}{
		{"no token", "", "team/app", "1", http.StatusUnauthorized, "registry token"},
		{"a wrong token", "Bearer wrong", "team/app", "1", http.StatusUnauthorized, "registry token"},
		{"no rule", "Bearer " + registryToken, "other/app", "1", http.StatusOK, "no rule"},
		{"by digest alone", "Bearer " + registryToken, "team/app", "", http.StatusOK, "pushed by digest"},
		{"cosign's signature", "Bearer " + registryToken, "team/app", "sha256-" + strings.Repeat("b", 64) + ".sig", http.StatusOK, "evidence attached"},
	} {
		code, out := postHook(t, s.WebhookURL+"/webhooks/registry/distribution", http.Header{"Authorization": {c.auth}}, fmt.Sprintf(envelope, c.repo, c.tag))
		if code != c.want || !strings.Contains(out, c.says) {
			t.Errorf("%s: %d %s, want %d saying %q", c.name, code, out, c.want, c.says)
		}
	}
	if code, out := postHook(t, s.WebhookURL+"/webhooks/registry/harbor", http.Header{"Authorization": {registryToken}}, `{"type": "PUSH_ARTIFACT", "event_data": {}}`); code != http.StatusBadRequest {
		t.Errorf("a Harbor event with no repository: %d %s", code, out)
	}
	if n := startsOf(t, s, events.AdmissionRequested); n != 5 {
		t.Errorf("%d admissions after refused and ignored deliveries, want 5", n)
	}
	// Each delivery is a [WEBHOOK] line saying what came of it, and the
	// token a Quay or Docker Hub notification carries in its URL is not.
	log := logged.String()
	for _, want := range []string{`msg="[WEBHOOK] registry/quay: run `, `msg="[WEBHOOK] registry/dockerhub: run `,
		`msg="[WEBHOOK] registry/distribution: 200 ignored: other/app:1: no rule`, `level=WARN msg="[WEBHOOK] registry/distribution: refused 401: bad or missing registry token`,
		`level=WARN msg="[WEBHOOK] registry/harbor: refused 400: `} {
		if !strings.Contains(log, want) {
			t.Errorf("the log has no %s", want)
		}
	}
	if strings.Contains(log, registryToken) {
		t.Error("the log holds the registry token")
	}
}

// admissionStack starts digestline dev serving its webhooks on hooks,
// with the webhook config rules (read as the builder reads its file).
func admissionStack(t *testing.T, hooks, rules string, opts ...e2etest.Option) *e2etest.Stack {
	t.Helper()
	file := filepath.Join(t.TempDir(), "webhooks.yaml")
	if err := os.WriteFile(file, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DIGESTLINE_REGISTRY_WEBHOOK_TOKEN", registryToken)
	t.Setenv("DIGESTLINE_WEBHOOK_SECRET", e2etest.WebhookSecret)
	cfg, err := builder.LoadWebhookConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := e2etest.StartStack(t, append(opts, func(c *dev.Config) { c.WebhookAddr, c.Webhook = hooks, cfg })...)
	return s
}

// cranePush has crane build an image of one file and push it to ref; it
// returns its digest.
func cranePush(t *testing.T, ref, content string) string {
	t.Helper()
	layer := filepath.Join(t.TempDir(), "layer.tar")
	if err := os.WriteFile(layer, tarOf(t, "app/content", content), 0o644); err != nil {
		t.Fatal(err)
	}
	e2etest.RunTool(t, "crane", "append", "--insecure", "--oci-empty-base", "-f", layer, "-t", ref)
	return strings.TrimSpace(e2etest.RunTool(t, "crane", "digest", "--insecure", ref))
}

func postHook(t *testing.T, u string, header http.Header, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// awaitSummary waits until digestline's verification summary of dev, by
// the key, is attached to repo@d.
func awaitSummary(t *testing.T, repo, d, key string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if v, ok := verificationSummaries(t, repo, d, key)["dev"]; ok {
			if v.VerificationResult != "PASSED" || len(v.InputAttestations) == 0 {
				t.Errorf("dev's verification summary of %s@%s: %+v (want PASSED, naming the signature it admitted)", repo, d, v)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no verification summary of dev attached to %s@%s", repo, d)
		}
	}
}

// awaitRecord waits until env's record of repo is at d.
func awaitRecord(t *testing.T, s *e2etest.Stack, env, repo, d string) {
	t.Helper()
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var rec api.PromotionRecord
		if s.GetJSON(t, "/v1/promotions/"+env+"/"+repo, &rec) == http.StatusOK && rec.Current != nil && rec.Current.Digest == d {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's record of %s did not reach %s: %+v", env, repo, d, rec.Current)
		}
	}
}

// awaitRun waits until the run of repo's digest d has ended, and returns it.
func awaitRun(t *testing.T, s *e2etest.Stack, repo, d string) runs.Run {
	t.Helper()
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var page api.Page[runs.Run]
		s.GetJSON(t, "/v1/runs?repository="+url.QueryEscape(repo)+"&limit=50", &page)
		for _, r := range page.Items {
			if r.Digest == d && r.Done() {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no run of %s@%s ended: %+v", repo, d, page.Items)
		}
	}
}

// startsOf counts the runs started with n on the bus.
func startsOf(t *testing.T, s *e2etest.Stack, n events.Name) int {
	t.Helper()
	st, err := s.JetStream.Stream(context.Background(), events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(n.Filter()))
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, c := range info.State.Subjects {
		total += int(c)
	}
	return total
}
