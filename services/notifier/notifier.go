package notifier

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/service"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
)

// Config configures the notifier.
type Config struct {
	service.Deps
	// Rules are the webhooks and what each is sent (LoadRules).
	Rules []Rule
	// Timeout bounds each webhook call (default 10s): a webhook slower
	// than that is retried as one that is down.
	Timeout time.Duration
	// PageURL is the reporter's page (DIGESTLINE_API_URL): commit statuses
	// link each run's page there.
	PageURL string
}

// Run sends each rule's notifications until ctx is cancelled.
func Run(ctx context.Context, cfg Config) error {
	if len(cfg.Rules) == 0 {
		return errors.New("notifier: no webhooks (DIGESTLINE_NOTIFICATIONS names the file: docs/day-two.md)")
	}
	b := cfg.Bus("notifier") // no registry, blobs or tags: the bus alone
	var sent jetstream.KeyValue
	err := bus.UntilReady(ctx, cfg.Log(), "the notifier's bucket", time.Now().Add(bus.StartWait), func(ctx context.Context) (err error) {
		sent, err = cfg.JetStream.KeyValue(ctx, events.NotifiedBucket)
		return err
	})
	if err != nil {
		return fmt.Errorf("open %s (is the bus provisioned?): %w", events.NotifiedBucket, err)
	}
	// Commit statuses read the request of the run each event is of.
	stream, err := cfg.JetStream.Stream(ctx, events.StreamName)
	if err != nil {
		return fmt.Errorf("open %s (is the bus provisioned?): %w", events.StreamName, err)
	}
	for _, rule := range cfg.Rules {
		if needsLink(rule.Format) && cfg.PageURL == "" {
			return fmt.Errorf("notifier: webhook %s: %s statuses must link the run's page: set DIGESTLINE_API_URL to the reporter's address as the forge's users reach it", rule.Name, rule.Format)
		}
	}
	client := &http.Client{Timeout: cmp.Or(cfg.Timeout, 10*time.Second)}
	stale := 3 * client.Timeout // no send takes that long
	g, gctx := errgroup.WithContext(ctx)
	for _, rule := range cfg.Rules {
		s := &sender{rule: rule, client: client, sent: sent, stream: stream, pageURL: pageURL(cfg.PageURL),
			stale: stale, log: cfg.Log().With("webhook", rule.Name)}
		// A consumer per webhook: one that is down is retried and
		// dead-lettered alone, and the others' are sent once.
		r := b.Router(bus.ConsumerSpec{Durable: "notifier-" + rule.Name, Concurrency: 4})
		for _, name := range namesFor(rule.Kinds) {
			r.Handle(name, s.notify)
		}
		g.Go(func() error { return r.Run(gctx) })
	}
	return g.Wait()
}

// pageURL is the reporter's page as links name it: DIGESTLINE_API_URL
// may be host:port.
func pageURL(api string) string {
	if api != "" && !strings.Contains(api, "://") {
		api = "http://" + api
	}
	return strings.TrimSuffix(api, "/")
}

// namesFor are the events that carry notifications of kinds.
func namesFor(kinds []string) []events.Name {
	var names []events.Name
	add := func(ns ...events.Name) {
		for _, n := range ns {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	for _, k := range kinds {
		switch k {
		case KindPromoted, KindRolledBack:
			add(events.Promoted)
		case KindRejected:
			add(events.PromotionRejected)
		case KindFailed:
			add(events.BuildFailed, events.PushFailed, events.VerifyFailed)
		case KindDeployFailed:
			add(events.DeploymentReported)
		case KindFrozen:
			add(events.EnvironmentFrozen)
		case KindUnfrozen:
			add(events.EnvironmentUnfrozen)
		case KindStatus:
			add(events.BuildRequested, events.BuildCompleted, events.Promoted, events.Superseded, events.PromotionRejected,
				events.BuildFailed, events.PushFailed, events.VerifyFailed)
		}
	}
	return names
}

// sender sends one rule's notifications.
type sender struct {
	rule    Rule
	client  *http.Client
	sent    jetstream.KeyValue // what was sent: <rule>.<hash of the event id>; a run's status: <rule>.status.<run>
	stream  jetstream.Stream   // the events: a run's request, for its commit
	pageURL string             // the reporter's page, for a status's link
	stale   time.Duration      // a claim this old is a sender that died (claim)
	log     *slog.Logger
}

// notify sends m to the rule's webhook when the rule wants it.
func (s *sender) notify(ctx context.Context, m bus.Message) error {
	if isStatus(s.rule.Format) {
		return s.notifyStatus(ctx, m)
	}
	kind, env, text, err := notification(m)
	if err != nil {
		return bus.Permanent(err)
	}
	if kind == "" || !s.rule.wants(kind, env) {
		return nil
	}
	id := sha256.Sum256([]byte(m.Event.ID()))
	key := s.rule.Name + "." + hex.EncodeToString(id[:16])
	rev, send, err := s.claim(ctx, key)
	if err != nil || !send {
		return err // sent already (the event was stored twice, or delivered again), or ctx ended
	}
	if s.rule.Format == FormatCloudEvents {
		err = s.sendEvent(ctx, m.Event)
	} else {
		err = s.sendSlack(ctx, text)
	}
	if err != nil {
		// Let the next delivery claim it; a claim left behind goes stale.
		_ = s.sent.Delete(context.WithoutCancel(ctx), key, jetstream.LastRevision(rev))
		return fmt.Errorf("webhook %s, %s notification: %w", s.rule.Name, kind, err)
	}
	s.log.Info(fmt.Sprintf("sent %s to webhook %s", kind, s.rule.Name), "run_id", events.RunID(m.Event))
	if _, err := s.sent.Put(ctx, key, []byte(m.Event.ID())); err != nil {
		// Sent: sending it again would be worse than not remembering it.
		s.log.Warn(fmt.Sprintf("sent %s to webhook %s, but could not remember it (a redelivery would send it again): %v", kind, s.rule.Name, err))
	}
	return nil
}

// sending is the value of a notification's key while a handler sends it;
// once sent, the key holds the event's id.
const sending = "sending"

// claim makes this handler the one that sends the notification key, and
// says whether to send it: not when it was sent already. The claim is a
// key created only where there is none, so two copies of one event
// (stored twice, handled at once by two workers or replicas) are not both
// sent: the second waits until the first is sent (then it sends nothing)
// or gave up (then it claims it). A claim older than s.stale is a sender
// that died mid-way, and is taken over.
func (s *sender) claim(ctx context.Context, key string) (rev uint64, send bool, err error) {
	for {
		rev, err := s.sent.Create(ctx, key, []byte(sending))
		if err == nil {
			return rev, true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, false, fmt.Errorf("webhook %s: claim the notification: %w", s.rule.Name, err)
		}
		e, err := s.sent.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			continue // given up meanwhile: claim it
		case err != nil:
			return 0, false, fmt.Errorf("webhook %s: read what was sent: %w", s.rule.Name, err)
		case string(e.Value()) != sending:
			return 0, false, nil
		case time.Since(e.Created()) > s.stale:
			if rev, err := s.sent.Update(ctx, key, []byte(sending), e.Revision()); err == nil {
				return rev, true, nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, false, fmt.Errorf("webhook %s: wait for another handler sending the notification: %w", s.rule.Name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// notification is what m tells people: its kind ("" for none), the
// environment it is about ("" for none) and a line of text.
func notification(m bus.Message) (kind, env, text string, err error) {
	run := events.RunID(m.Event)
	switch m.Name {
	case events.Promoted:
		p, err := events.Decode[events.Promotion](m.Event)
		if err != nil {
			return "", "", "", err
		}
		if p.Release != nil && p.Digest == "" {
			return releaseNotification(p, run)
		}
		if p.Rollback {
			return KindRolledBack, p.Environment, fmt.Sprintf(":rewind: rolled back %s to %s%s (from %s): %s — by %s, run %s",
				p.Environment, p.Ref(), p.BuiltFrom(), cmp.Or(p.PreviousDigest, "nothing"), p.Reason, cmp.Or(p.RequestedBy, "the pipeline"), run), nil
		}
		return KindPromoted, p.Environment, fmt.Sprintf(":white_check_mark: promoted %s%s to %s (previous %s) — by %s, run %s",
			p.Ref(), p.BuiltFrom(), p.Environment, cmp.Or(p.PreviousDigest, "none"), cmp.Or(p.RequestedBy, "the pipeline"), run), nil
	case events.PromotionRejected:
		rj, err := events.Decode[events.Rejection](m.Event)
		if err != nil {
			return "", "", "", err
		}
		return KindRejected, rj.Environment, fmt.Sprintf(":no_entry: rejected %s@%s for %s at gate %s: %s (run %s)",
			rj.Repository, rj.Digest, rj.Environment, rj.Gate, rj.Reason, run), nil
	case events.BuildFailed, events.PushFailed, events.VerifyFailed:
		f, err := events.Decode[events.Failure](m.Event)
		if err != nil {
			return "", "", "", err
		}
		return KindFailed, "", failedText(m.Name, f, run), nil
	case events.DeploymentReported:
		d, err := events.Decode[events.DeploymentReport](m.Event)
		if err != nil || d.Status != events.DeployFailed {
			return "", "", "", err
		}
		return KindDeployFailed, d.Environment, fmt.Sprintf(":boom: deployment of %s@%s to %s failed, reported by %s: %s (run %s)",
			d.Repository, d.Digest, d.Environment, d.Deployer, cmp.Or(d.Detail, "no detail"), run), nil
	case events.EnvironmentFrozen, events.EnvironmentUnfrozen:
		f, err := events.Decode[events.FreezeNotice](m.Event)
		if err != nil {
			return "", "", "", err
		}
		return freezeText(m.Name, f)
	}
	return "", "", "", nil
}

// freezeText is what a freeze's event tells people.
func freezeText(name events.Name, f events.FreezeNotice) (kind, env, text string, err error) {
	by := "by " + f.By
	if f.Window != "" {
		by = "by freeze window " + f.Window
	}
	switch {
	case name == events.EnvironmentUnfrozen && f.Window != "":
		return KindUnfrozen, f.Environment, fmt.Sprintf(":sunny: %s is open again: freeze window %s (%s) has ended", f.Environment, f.Window, f.Reason), nil
	case name == events.EnvironmentUnfrozen:
		return KindUnfrozen, f.Environment, fmt.Sprintf(":sunny: %s is open again: %s lifted the freeze (%s)", f.Environment, f.By, f.Reason), nil
	}
	return KindFrozen, f.Environment, fmt.Sprintf(":snowflake: %s is frozen until %s %s: %s", f.Environment, f.Until.Format(time.RFC3339), by, f.Reason), nil
}

func failedText(name events.Name, f events.Failure, run string) string {
	text := fmt.Sprintf(":x: %s: %s failed at %s (%s): %s", cmp.Or(f.Target, "a run"), strings.TrimSuffix(string(name), ".failed"),
		cmp.Or(f.Stage, "?"), f.Class, f.Message)
	if f.Hint != "" {
		text += " — " + f.Hint
	}
	return text + " (run " + run + ")"
}

// sendSlack posts {"text": text}, as Slack's incoming webhooks take it.
func (s *sender) sendSlack(ctx context.Context, text string) error {
	code, said, err := s.postJSON(ctx, s.rule.URL, map[string]string{"text": text}, "is the webhook up? the notification is retried, then dead-lettered")
	if err != nil {
		return err
	}
	return statusError(code, said)
}

// postJSON posts body as JSON to endpoint with the rule's headers, and
// returns the answer's status and what it said (answer); a request that
// reached no answer fails as a transport failure with hint.
func (s *sender) postJSON(ctx context.Context, endpoint string, body any, hint string) (code int, said string, err error) {
	data, err := json.Marshal(body)
	if err != nil {
		return 0, "", bus.Permanent(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(data))
	if err != nil {
		return 0, "", bus.Permanent(redact(err, s.rule.URL))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	for k, v := range s.rule.Headers {
		req.Header.Set(k, v)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, "", sendFailure(failure.Transport, hint, redact(err, s.rule.URL))
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, answer(text, s.rule.URL), nil
}

// answer is what a webhook said with its status, as a failure names it:
// one line, at most 200 characters, never its URL (Slack's answers say
// why in a word: invalid_payload, no_text, channel_not_found).
func answer(body []byte, url string) string {
	said := strings.Join(strings.Fields(strings.ReplaceAll(string(body), url, "<the webhook's URL>")), " ")
	if r := []rune(said); len(r) > 200 {
		said = string(r[:200]) + "…"
	}
	return said
}

// sendEvent sends ev as a CloudEvent over HTTP.
func (s *sender) sendEvent(ctx context.Context, ev cloudevents.Event) error {
	opts := []cehttp.Option{cehttp.WithTarget(s.rule.URL), cehttp.WithClient(*s.client)}
	for k, v := range s.rule.Headers {
		opts = append(opts, cehttp.WithHeader(k, v))
	}
	p, err := cehttp.New(opts...)
	if err != nil {
		return bus.Permanent(err)
	}
	c, err := cloudevents.NewClient(p)
	if err != nil {
		return bus.Permanent(err)
	}
	res := c.Send(ctx, ev)
	if cloudevents.IsACK(res) {
		return nil
	}
	var status *cehttp.Result
	if cloudevents.ResultAs(res, &status) {
		return statusError(status.StatusCode, "")
	}
	return sendFailure(failure.Transport, "is the webhook up? the notification is retried, then dead-lettered", redact(res, s.rule.URL))
}

// statusError classifies a webhook's answer, its status and what it said
// with it: 2xx is sent; 408, 429 and 5xx are retried; any other refuses it
// for good (dead-lettered at once).
func statusError(code int, said string) error {
	err := fmt.Errorf("HTTP %d", code)
	if said != "" {
		err = fmt.Errorf("HTTP %d: %s", code, said)
	}
	switch {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusTooManyRequests:
		return sendFailure(failure.RateLimit, "the webhook asks for less: retried after a backoff", err)
	case code == http.StatusRequestTimeout || code >= 500:
		return sendFailure(failure.Transport, "the webhook failed: retried, then dead-lettered", err)
	}
	return bus.Permanent(sendFailure(failure.Input, "check the webhook's URL and headers in the notifications file", err))
}

// sendFailure is a webhook call that failed, classified, with what to do.
func sendFailure(class failure.Class, hint string, err error) *failure.Error {
	e := failure.New(class, err, hint)
	e.Stage = "notify"
	return e
}

// redact keeps a webhook's URL, which may hold its secret, out of err.
func redact(err error, url string) error {
	if err == nil {
		return nil
	}
	return errors.New(strings.ReplaceAll(err.Error(), url, "<the webhook's URL>"))
}

// releaseNotification is what a release's promoted event tells people:
// the release, and each image.
func releaseNotification(p events.Promotion, run string) (kind, env, text string, err error) {
	images := make([]string, len(p.Release.Images))
	for i, im := range p.Release.Images {
		images[i] = im.Ref()
	}
	if p.Rollback {
		return KindRolledBack, p.Environment, fmt.Sprintf(":rewind: rolled back release %s in %s: %s — %s, by %s, run %s",
			p.Release.Name, p.Environment, strings.Join(images, ", "), p.Reason, cmp.Or(p.RequestedBy, "the pipeline"), run), nil
	}
	return KindPromoted, p.Environment, fmt.Sprintf(":white_check_mark: released %s to %s: %s — by %s, run %s",
		p.Release.Name, p.Environment, strings.Join(images, ", "), cmp.Or(p.RequestedBy, "the pipeline"), run), nil
}
