package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/digestline/digestline/cmd/digestline/internal/dev"
	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/services/builder"
	"github.com/nats-io/nats.go/jetstream"
)

// TestWebhooksStartRunsOncePerDelivery: a signed GitHub push builds the
// pushed commit and ends promoted; the same delivery sent again is the same
// run; forged, malformed and oversized deliveries are refused and publish
// nothing.
func TestWebhooksStartRunsOncePerDelivery(t *testing.T) {
	repo, sha := e2etest.GitRepo(t, "from a webhook")
	e2etest.Git(t, repo, "tag", "v1.0.0") // the tag the push below announces

	regAddr := fmt.Sprintf("127.0.0.1:%d", e2etest.FreePort(t)) // the rule names the image by it
	s, _ := e2etest.StartStack(t, e2etest.WithRegistryAddr(regAddr), func(c *dev.Config) {
		c.WebhookAddr = "127.0.0.1:0"
		c.Webhook = builder.WebhookConfig{Secret: e2etest.WebhookSecret, GitLabToken: "gitlab-token-0123456789",
			Repositories: []builder.WebhookRule{{Match: "acme/app", Git: "file://" + repo, Image: regAddr + "/acme/app", PromoteTo: "dev"}}}
	})
	body := e2etest.GitPushBody("acme/app", "v1.0.0", sha)
	sign := func(b []byte) string { return e2etest.SignGitHub(e2etest.WebhookSecret, b) }
	send := func(path, signature, delivery string, b []byte) (int, builder.WebhookAccepted) {
		return e2etest.SendGitHub(t, s.WebhookURL+path, signature, delivery, b)
	}
	requests := func() uint64 {
		st, err := s.JetStream.Stream(context.Background(), events.StreamName)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(events.BuildRequested.Filter()))
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, perRun := range info.State.Subjects {
			n += perRun
		}
		return n
	}

	for _, tc := range []struct {
		name, signature string
		body            []byte
		want            int
	}{
		{"no signature", "", body, http.StatusUnauthorized},
		{"forged signature", "sha256=" + strings.Repeat("ab", 32), body, http.StatusUnauthorized},
		{"signature of another body", sign([]byte("{}")), body, http.StatusUnauthorized},
		{"malformed body", sign([]byte("not json")), []byte("not json"), http.StatusBadRequest},
		{"oversized body", "", bytes.Repeat([]byte("x"), builder.MaxWebhookBody+1), http.StatusRequestEntityTooLarge},
	} {
		if got, _ := send("/webhooks/github", tc.signature, "refused-"+tc.name, tc.body); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	// A forge pointed at a mistyped path is told so in JSON, as by every
	// other refusal.
	resp, err := http.Post(s.WebhookURL+"/webhooks/githb", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var refusal struct{ Error string }
	if json.NewDecoder(resp.Body).Decode(&refusal) != nil || resp.StatusCode != http.StatusNotFound || !strings.Contains(refusal.Error, "no such endpoint") {
		t.Errorf("a delivery to /webhooks/githb: %d %+v", resp.StatusCode, refusal)
	}
	_ = resp.Body.Close()
	if n := requests(); n != 0 {
		t.Fatalf("refused deliveries published %d build.requested", n)
	}

	code, first := send("/webhooks/github", sign(body), "delivery-1", body)
	if code != http.StatusAccepted || first.RunID == "" {
		t.Fatalf("signed push: %d %+v", code, first)
	}
	code, again := send("/webhooks/github", sign(body), "delivery-1", body) // GitHub retries the delivery
	if code != http.StatusAccepted || again.RunID != first.RunID {
		t.Fatalf("redelivery: %d %+v, want run %s", code, again, first.RunID)
	}
	n, ev := func() (events.Name, map[string]any) {
		evs := s.RunEvents(t, first.RunID)
		last := evs[len(evs)-1]
		n, _ := events.NameOfType(last["type"].(string))
		return n, last
	}()
	if n != events.Promoted {
		t.Fatalf("the webhook's run ended with %s: %v", n, ev["data"])
	}
	if p := e2etest.DataOf[events.Promotion](t, ev); p.Repository != s.RegistryAddr+"/acme/app" {
		t.Fatalf("promoted %+v", p)
	}
	if n := requests(); n != 1 {
		t.Fatalf("one delivery sent twice published %d build.requested", n)
	}
	// The run's trace starts at the webhook request and reaches promotion.
	traces := map[string]map[string]bool{}
	for _, sp := range s.Spans.Ended() {
		id := sp.SpanContext().TraceID().String()
		if traces[id] == nil {
			traces[id] = map[string]bool{}
		}
		traces[id][sp.Name()] = true
	}
	found := false
	for _, names := range traces {
		found = found || (names["webhook github"] && names["builder process build.requested"] && names["reporter process verify.completed"])
	}
	if !found {
		t.Fatal("no trace runs from the webhook request to the reporter")
	}

	// An unknown repository is acknowledged (so the forge does not retry)
	// and builds nothing.
	other, _ := json.Marshal(map[string]any{"ref": "refs/heads/main", "after": sha, "repository": map[string]string{"full_name": "someone/else"}})
	if code, acc := send("/webhooks/github", sign(other), "delivery-2", other); code != http.StatusOK || acc.RunID != "" {
		t.Fatalf("push of an unmapped repository: %d %+v", code, acc)
	}
	if n := requests(); n != 1 {
		t.Fatalf("an unmapped repository started a build (%d requests)", n)
	}

	// A build.requested CloudEvent in binary mode, with the secret as bearer token.
	req := events.BuildRequest{Source: events.Source{Kind: events.SourceGit, URL: "file://" + repo, Rev: sha}, Target: s.RegistryAddr + "/acme/ce:1"}
	data, _ := json.Marshal(req)
	post := func(token string) int {
		r, _ := http.NewRequest(http.MethodPost, s.WebhookURL+"/webhooks/cloudevents", bytes.NewReader(data))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Ce-Specversion", "1.0")
		r.Header.Set("Ce-Id", "ce-delivery-1")
		r.Header.Set("Ce-Source", "/ci/test")
		r.Header.Set("Ce-Type", events.BuildRequested.Type())
		r.Header.Set("Ce-Runid", "ignored")
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(""); code != http.StatusUnauthorized {
		t.Fatalf("cloudevent without the token: %d", code)
	}
	if code := post(e2etest.WebhookSecret); code != http.StatusAccepted {
		t.Fatalf("cloudevent: %d", code)
	}
	if n := requests(); n != 2 {
		t.Fatalf("%d build.requested after the CloudEvent, want 2", n)
	}

	// GitLab: X-Gitlab-Token, and the event UUID as delivery id.
	lab, _ := json.Marshal(map[string]any{"ref": "refs/heads/main", "checkout_sha": sha,
		"project": map[string]string{"path_with_namespace": "acme/app", "git_http_url": "https://gitlab.example/acme/app.git"}})
	for token, want := range map[string]int{"wrong-token-0123456789": http.StatusUnauthorized, "gitlab-token-0123456789": http.StatusAccepted} {
		r, _ := http.NewRequest(http.MethodPost, s.WebhookURL+"/webhooks/gitlab", bytes.NewReader(lab))
		r.Header.Set("X-Gitlab-Token", token)
		r.Header.Set("X-Gitlab-Event", "Push Hook")
		r.Header.Set("X-Gitlab-Event-UUID", "gitlab-delivery-1")
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("gitlab with token %q: %d, want %d", token, resp.StatusCode, want)
		}
	}
	if n := requests(); n != 3 {
		t.Fatalf("%d build.requested after the GitLab push, want 3", n)
	}
}
