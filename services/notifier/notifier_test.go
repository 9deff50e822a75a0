package notifier_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/services/notifier"
)

// receiver is a webhook that keeps what it was sent.
type receiver struct {
	mu     sync.Mutex
	slack  []string // the texts
	events []string // the CloudEvents' ids and types
	auth   []string // the Authorization headers
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.auth = append(rc.auth, r.Header.Get("Authorization"))
	switch r.URL.Path {
	case "/slack":
		var body struct{ Text string }
		if json.NewDecoder(r.Body).Decode(&body) != nil || body.Text == "" {
			http.Error(w, "want {\"text\": …}", http.StatusBadRequest)
			return
		}
		rc.slack = append(rc.slack, body.Text)
	case "/ce":
		// Read by the CloudEvents SDK's own HTTP binding, which validates it.
		ev, err := cehttp.NewEventFromHTTPRequest(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := ev.Validate(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rc.events = append(rc.events, ev.ID()+" "+ev.Type())
	}
}

func (rc *receiver) got() (slack, evs, auth []string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.slack), slices.Clone(rc.events), slices.Clone(rc.auth)
}

// TestNotifierSendsEachChosenEventOnce: each webhook of the file is sent
// the notifications it chose, each once (an event stored twice too), as
// Slack JSON (with its secret
// header from the environment) or as CloudEvents over HTTP; a webhook that
// is down is retried, then its notifications are dead-lettered, and the
// others are not held up.
func TestNotifierSendsEachChosenEventOnce(t *testing.T) {
	rc := &receiver{}
	hs := httptest.NewServer(rc)
	defer hs.Close()
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downURL := "http://" + down.Addr().String() + "/hook"
	down.Close() // nothing listens there
	t.Setenv("TEST_HOOK_TOKEN", "s3cret-token")
	t.Setenv("TEST_HOOK_BASE", hs.URL)
	file := filepath.Join(t.TempDir(), "notifications.yaml")
	if err := os.WriteFile(file, fmt.Appendf(nil, `webhooks:
  - name: team-chat
    events: [promoted, rolled-back, rejected, frozen, unfrozen]
    environments: [prod]
    url: ${TEST_HOOK_BASE}/slack
    headers:
      Authorization: Bearer ${TEST_HOOK_TOKEN}
  - name: audit
    events: [promoted, rolled-back, rejected, failed, deploy-failed]
    format: cloudevents
    url: ${TEST_HOOK_BASE}/ce
  - name: pager
    events: [promoted]
    url: %s
`, downURL), 0o644); err != nil {
		t.Fatal(err)
	}
	rules, err := notifier.LoadRules(file)
	if err != nil {
		t.Fatal(err)
	}
	srv := bustest.NewServer(t)
	ctx := t.Context()
	startNotifier(t, srv, notifier.Config{Rules: rules, Timeout: time.Second}, 10*time.Millisecond)

	b := bus.NewBus(srv.JetStream, "/digestline/test/reporter")
	var first []byte
	start := func(run string, n events.Name, data any) {
		t.Helper()
		ev, err := b.Start(ctx, n, run, "registry.example/app", data)
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first, _ = ev.MarshalJSON()
		}
	}
	const app = "registry.example/app"
	d := func(c string) string { return "sha256:" + strings.Repeat(c, 64) }
	start("r1", events.Promoted, events.Promotion{Environment: "prod", Repository: app, Digest: d("a"), RunID: "r1", PromotedAt: time.Now(), Commit: strings.Repeat("5e", 20)})
	start("r2", events.Promoted, events.Promotion{Environment: "staging", Repository: app, Digest: d("b"), RunID: "r2", PromotedAt: time.Now()})
	start("r3", events.Promoted, events.Promotion{Environment: "prod", Repository: app, Digest: d("c"), RunID: "r3", PromotedAt: time.Now(),
		PreviousDigest: d("a"), Rollback: true, Reason: "checkout 500s"})
	start("r4", events.PromotionRejected, events.Rejection{Environment: "prod", Repository: app, Digest: d("d"), Gate: "freeze", Reason: "holidays", RejectedAt: time.Now()})
	start("r5", events.BuildFailed, events.NewFailure(failure.Errorf(failure.Input, "fix the path", "no such directory")))
	start("r6", events.DeploymentReported, events.DeploymentReport{Environment: "prod", Repository: app, Digest: d("a"), Deployer: "k8s", Status: events.DeployFailed, Detail: "probe failed"})
	start("r7", events.DeploymentReported, events.DeploymentReport{Environment: "prod", Repository: app, Digest: d("a"), Deployer: "k8s", Status: events.DeployOK})
	start("r8", events.EnvironmentFrozen, events.FreezeNotice{Environment: "prod", Until: time.Date(2027, 1, 4, 5, 0, 0, 0, time.UTC), Reason: "holidays", By: "policy", Window: "year-end"})
	start("r9", events.EnvironmentFrozen, events.FreezeNotice{Environment: "staging", Until: time.Now().Add(time.Hour), Reason: "load test", By: "alice"})
	start("r10", events.EnvironmentUnfrozen, events.FreezeNotice{Environment: "prod", Until: time.Now().Add(time.Hour), Reason: "incident 42", By: "bob"})
	// The first promotion stored again (a producer's retry past the
	// duplicate window): it is not sent twice.
	if _, err := srv.JetStream.Publish(ctx, events.Promoted.Subject("r1"), first); err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(20 * time.Second)
	for {
		slack, evs, _ := rc.got()
		if len(slack) >= 5 && len(evs) >= 6 && len(srv.DeadLetters(t)) >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // anything sent twice comes by now
	slack, evs, auth := rc.got()
	all := strings.Join(slack, "\n")
	if len(slack) != 5 || !strings.Contains(all, "rolled back prod") || !strings.Contains(all, "at gate freeze: holidays") ||
		!strings.Contains(all, "promoted "+app+"@"+d("a")+", built from commit 5e5e5e5e5e5e to prod") ||
		!strings.Contains(all, "prod is frozen until 2027-01-04T05:00:00Z by freeze window year-end: holidays") ||
		!strings.Contains(all, "prod is open again: bob lifted the freeze (incident 42)") || strings.Contains(all, "staging") {
		t.Errorf("team-chat was sent %d: %q", len(slack), slack)
	}
	if !slices.Contains(auth, "Bearer s3cret-token") {
		t.Errorf("the secret header was not sent: %q", auth)
	}
	types := map[string]int{}
	for _, e := range evs {
		types[strings.Fields(e)[1]]++
	}
	if len(evs) != 6 || len(slices.Compact(slices.Sorted(slices.Values(evs)))) != 6 || types[events.Promoted.Type()] != 3 || types[events.DeploymentReported.Type()] != 1 {
		t.Errorf("audit was sent %d CloudEvents: %v", len(evs), evs)
	}
	var dead []string
	for _, m := range srv.DeadLetters(t) {
		if m.Header.Get(bus.HeaderDLQConsumer) == "notifier-pager" {
			dead = append(dead, m.Subject)
		}
		if strings.Contains(m.Header.Get(bus.HeaderDLQReason), downURL) {
			t.Errorf("a dead letter's reason shows the webhook's URL: %s", m.Header.Get(bus.HeaderDLQReason))
		}
	}
	// Both promotions (the first one's two copies each its own letter: it
	// was never sent).
	if slices.Sort(dead); !slices.Equal(slices.Compact(dead), []string{"dlq." + events.Promoted.Subject("r1"), "dlq." + events.Promoted.Subject("r2")}) {
		t.Errorf("pager's dead letters: %v, want the two promotions", dead)
	}
}

// TestLoadRulesSaysWhatIsWrong: a notifications file that cannot be sent
// is refused at start, naming the webhook and what is wrong, and a URL
// with a secret is not repeated.
func TestLoadRulesSaysWhatIsWrong(t *testing.T) {
	for name, tc := range map[string]struct{ body, says string }{
		"no webhooks":      {"webhooks: []\n", "no webhooks"},
		"an unknown event": {"webhooks:\n  - name: a\n    events: [deployed-ok]\n    url: http://x.example/\n", `event "deployed-ok"`},
		"no events":        {"webhooks:\n  - name: a\n    url: http://x.example/\n", "events: name one or more"},
		"a bad name":       {"webhooks:\n  - name: Team Chat\n    events: [promoted]\n    url: http://x.example/\n", `name "Team Chat"`},
		"a missing secret": {"webhooks:\n  - name: a\n    events: [promoted]\n    url: https://hooks.example/${NO_SUCH_VAR_HERE}\n", "NO_SUCH_VAR_HERE is not set"},
		"not http":         {"webhooks:\n  - name: a\n    events: [promoted]\n    url: ftp://secret@x.example/\n", "want an http or https URL"},
		"a bad format":     {"webhooks:\n  - name: a\n    events: [promoted]\n    url: http://x.example/\n    format: xml\n", `format "xml": want slack, cloudevents or a forge's commit statuses: github-status, gitea-status, gitlab-status, bitbucket-status, bitbucket-server-status, azure-status`},
		"an unknown field": {"webhooks:\n  - name: a\n    evnts: [promoted]\n", "field evnts not found"},
		"a status with events": {"webhooks:\n  - name: a\n    format: github-status\n    events: [promoted]\n    url: https://api.github.com\n",
			"format github-status reports every run a push started on its commit: it takes no events or environments"},
		"a forge of a chat": {"webhooks:\n  - name: a\n    events: [promoted]\n    url: http://x.example/\n    forge: github.com\n", "forge: only the status formats"},
	} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "n.yaml")
			if err := os.WriteFile(file, []byte(tc.body), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := notifier.LoadRules(file)
			if err == nil || !strings.Contains(err.Error(), tc.says) || strings.Contains(err.Error(), "secret@") {
				t.Errorf("%v, want an error saying %q", err, tc.says)
			}
		})
	}
}

// TestNotifierSendsAnEventStoredTwiceOnceThoughBothCopiesComeAtOnce: two
// copies of one event (a producer's retry past the duplicate window),
// handled at the same time by two workers while the webhook is slow to
// answer, are sent once: the second waits for the first's claim.
func TestNotifierSendsAnEventStoredTwiceOnceThoughBothCopiesComeAtOnce(t *testing.T) {
	var mu sync.Mutex
	var got []string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond) // both copies are in hand by now
		var body struct{ Text string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		got = append(got, body.Text)
		mu.Unlock()
	}))
	defer hs.Close()
	rules := chatRule(t, hs.URL)
	srv := bustest.NewServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	defer func() { cancel(); <-done }()

	ev := promotedR1(t)
	raw, _ := ev.MarshalJSON()
	for range 2 { // stored twice, before the notifier starts: its workers take both at once
		if _, err := srv.JetStream.Publish(ctx, events.Promoted.Subject("r1"), raw); err != nil {
			t.Fatal(err)
		}
	}
	go func() {
		done <- notifier.Run(ctx, notifier.Config{Rules: rules, Deps: service.Deps{JetStream: srv.JetStream}})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second) // a second send comes by now
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("the webhook was sent %d notifications for one event: %q", len(got), got)
	}
}

// TestNotifierTakesOverTheClaimOfASenderThatDied: a claim left by a
// handler that died while sending (its process killed) goes stale after
// three webhook timeouts, and the next delivery sends the notification.
func TestNotifierTakesOverTheClaimOfASenderThatDied(t *testing.T) {
	rc := &receiver{}
	hs := httptest.NewServer(rc)
	defer hs.Close()
	rules := chatRule(t, hs.URL)
	srv := bustest.NewServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	ev := promotedR1(t)
	// The claim a sender that died left: the key the notifier files it under.
	kv, err := srv.JetStream.KeyValue(ctx, events.NotifiedBucket)
	if err != nil {
		t.Fatal(err)
	}
	id := sha256.Sum256([]byte(ev.ID()))
	if _, err := kv.Create(ctx, "chat."+hex.EncodeToString(id[:16]), []byte("sending")); err != nil {
		t.Fatal(err)
	}
	if err := bus.NewBus(srv.JetStream, "/digestline/test/reporter").Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	defer func() { cancel(); <-done }()
	go func() { // 100 ms webhook timeout: the claim is stale after 300 ms
		done <- notifier.Run(ctx, notifier.Config{Rules: rules, Timeout: 100 * time.Millisecond, Deps: service.Deps{JetStream: srv.JetStream}})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if slack, _, _ := rc.got(); len(slack) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the notification a dead sender claimed was never sent")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// chatRule is one webhook, chat, sent promotions as Slack JSON at
// base/slack.
func chatRule(t *testing.T, base string) []notifier.Rule {
	t.Helper()
	file := filepath.Join(t.TempDir(), "notifications.yaml")
	if err := os.WriteFile(file, fmt.Appendf(nil, "webhooks:\n  - name: chat\n    events: [promoted]\n    url: %s/slack\n", base), 0o644); err != nil {
		t.Fatal(err)
	}
	rules, err := notifier.LoadRules(file)
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// promotedR1 is run r1's promotion to prod.
func promotedR1(t *testing.T) cloudevents.Event {
	t.Helper()
	ev, err := events.NewEvent("/digestline/test/reporter", events.Promoted, "r1", "registry.example/app",
		events.Promotion{Environment: "prod", Repository: "registry.example/app", Digest: "sha256:" + strings.Repeat("a", 64), RunID: "r1", PromotedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// startNotifier runs the notifier with cfg on srv's bus until the test
// ends, redelivering a failed notification after backoff; the test fails
// if the notifier ends with an error.
func startNotifier(t *testing.T, srv *bustest.Server, cfg notifier.Config, backoff time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cfg.Deps = service.Deps{JetStream: srv.JetStream, BusOptions: []bus.Option{bus.WithRedeliveryBackoff(func(uint64) time.Duration { return backoff })}}
	done := make(chan error, 1)
	go func() { done <- notifier.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}
