package builder

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestWebhooksWithoutSecretSayWhy: with no secret configured every
// delivery, a ping included, is refused with a 401 that says so, and
// names the variable that sets one.
func TestWebhooksWithoutSecretSayWhy(t *testing.T) {
	mux := http.NewServeMux()
	NewWebhooks(WebhookConfig{Repositories: []WebhookRule{{Match: "acme/app", Image: "registry.example/acme/app"}}}, nil, nil, nil).Register(mux)
	for path, headers := range map[string]map[string]string{
		"/webhooks/github":      {"X-GitHub-Event": "ping", "X-Hub-Signature-256": "sha256=00"},
		"/webhooks/gitlab":      {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "anything"},
		"/webhooks/cloudevents": {"Authorization": "Bearer anything"},
	} {
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(`{"zen":"hi"}`))
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		var body struct{ Error string }
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != http.StatusUnauthorized || !strings.Contains(body.Error, "no webhook secret is configured") || !strings.Contains(body.Error, "DIGESTLINE_WEBHOOK_SECRET") {
			t.Errorf("%s without a secret: %d %s", path, rec.Code, rec.Body)
		}
	}
}
