package builder

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/service"
)

// TestEachDeliveryIsLoggedWithWhatItsAnswerSays: every delivery to the
// webhooks leaves one [WEBHOOK] line in the builder's log naming the
// endpoint, the forge's event and delivery id and what came of it — the
// run it started, why it built nothing, why it was refused — and no
// secret: not the webhook's, not a registry token sent in the URL.
func TestEachDeliveryIsLoggedWithWhatItsAnswerSays(t *testing.T) {
	srv := bustest.NewServer(t)
	mux := http.NewServeMux()
	NewWebhooks(WebhookConfig{Secret: "s3cret", RegistryToken: "registry-token-0123", Repositories: []WebhookRule{
		{Match: "acme/app", Image: "r.example/acme/app", Branches: []string{"main"}},
	}}, bus.NewBus(srv.JetStream, "/digestline/test"), nil, nil).Register(mux)
	var logged bustest.LogBuffer
	hooks := LogDeliveries(slog.New(slog.NewTextHandler(&logged, nil)), service.JSONErrors("/webhooks/", mux))

	push := func(ref string) string {
		return `{"ref":"` + ref + `","before":"` + strings.Repeat("1", 40) + `","after":"` + strings.Repeat("2", 40) + `",
			"repository":{"full_name":"acme/app","clone_url":"https://github.example/acme/app.git"}}`
	}
	for _, d := range []struct {
		path, event, id, body, secret string
		status                        int
	}{
		{"/webhooks/github", "ping", "d-ping", `{"zen":"hi"}`, "s3cret", http.StatusOK},
		{"/webhooks/github", "push", "d-main", push("refs/heads/main"), "s3cret", http.StatusAccepted},
		{"/webhooks/github", "push", "d-feature", push("refs/heads/feature/x"), "s3cret", http.StatusOK},
		{"/webhooks/github", "push", "d-forged", push("refs/heads/main"), "not-the-secret", http.StatusUnauthorized},
		{"/webhooks/registry/quay?token=wrong-token-4567", "", "", `{}`, "", http.StatusUnauthorized},
	} {
		var rec *httptest.ResponseRecorder
		if d.event != "" {
			rec = sendGitHub(hooks, d.event, d.id, d.secret, d.body)
		} else {
			rec = httptest.NewRecorder()
			hooks.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, d.path, strings.NewReader(d.body)))
		}
		if rec.Code != d.status {
			t.Fatalf("%s %s: %d %s, want %d", d.path, d.id, rec.Code, rec.Body, d.status)
		}
	}

	log := logged.String()
	for _, want := range []string{
		`msg="[WEBHOOK] github ping d-ping: 200 pong"`,
		`msg="[WEBHOOK] github push d-main: run `,
		`msg="[WEBHOOK] github push d-feature: 200 ignored: refs/heads/feature/x is none of the branches and tags the rules of acme/app build (r.example/acme/app)"`,
		`level=WARN msg="[WEBHOOK] github push d-forged: refused 401: bad or missing X-Hub-Signature-256`,
		`level=WARN msg="[WEBHOOK] registry/quay: refused 401: bad or missing registry token`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("the log has no %s:\n%s", want, log)
		}
	}
	if n := strings.Count(log, "[WEBHOOK]"); n != 5 {
		t.Errorf("%d [WEBHOOK] lines for 5 deliveries:\n%s", n, log)
	}
	for _, secret := range []string{"s3cret", "registry-token-0123", "wrong-token-4567"} {
		if strings.Contains(log, secret) {
			t.Errorf("the log holds %q:\n%s", secret, log)
		}
	}
}
