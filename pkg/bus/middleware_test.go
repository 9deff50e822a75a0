package bus_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// deliveries publishes a build.requested of run and returns a pull
// consumer that receives it (each call to next is one delivery), the way
// a router's consumer would.
type deliveries struct {
	t    *testing.T
	srv  *bustest.Server
	cons jetstream.Consumer
}

func newDeliveries(t *testing.T, srv *bustest.Server, b *bus.Bus, run string, ackWait time.Duration) *deliveries {
	t.Helper()
	ctx := context.Background()
	if _, err := b.Start(ctx, events.BuildRequested, run, "app", bustest.BuildRequest()); err != nil {
		t.Fatal(err)
	}
	cons, err := srv.JetStream.CreateOrUpdateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{
		Durable: "mw-" + run, AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait, MaxDeliver: -1,
		FilterSubject: events.BuildRequested.Subject(run),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &deliveries{t: t, srv: srv, cons: cons}
}

// next waits up to wait for the next delivery; ok is false when none came.
func (d *deliveries) next(wait time.Duration, maxDeliver int) (bus.Message, bool) {
	d.t.Helper()
	msg, err := d.cons.Next(jetstream.FetchMaxWait(wait))
	if errors.Is(err, nats.ErrTimeout) {
		return bus.Message{}, false
	}
	if err != nil {
		d.t.Fatal(err)
	}
	m, err := bus.NewMessage(msg, "mw", maxDeliver)
	if err != nil {
		d.t.Fatal(err)
	}
	return m, true
}

// discard is a logger for middleware whose logs the test does not read.
var discard = slog.New(slog.DiscardHandler)

// validated runs h on m through Validate, as the router does.
func validated(h bus.Handler) bus.Handler { return bus.Validate()(h) }

func TestValidateHandsOnOnlyTheEventItsSubjectNames(t *testing.T) {
	t.Parallel()
	b, srv, _ := newBus(t)
	d := newDeliveries(t, srv, b, "run-valid", 10*time.Second)
	m, _ := d.next(5*time.Second, 5)
	var got events.Name
	if err := validated(func(_ context.Context, m bus.Message) error { got = m.Name; return nil })(context.Background(), m); err != nil || got != events.BuildRequested {
		t.Fatalf("a valid event: %v, handed on as %q", err, got)
	}

	// A body that is no event, and an event filed under another run's subject.
	ctx := context.Background()
	bad := events.BuildRequested.Subject("run-bad")
	if _, err := srv.JetStream.Publish(ctx, bad, []byte(`{"specversion":"1.0"`)); err != nil {
		t.Fatal(err)
	}
	other, _ := events.NewEvent(b.Source(), events.BuildRequested, "run-other", "app", bustest.BuildRequest())
	body, _ := other.MarshalJSON()
	if _, err := srv.JetStream.Publish(ctx, bad, body); err != nil {
		t.Fatal(err)
	}
	cons, err := srv.JetStream.CreateOrUpdateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{Durable: "bad", FilterSubject: bad, AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"not a structured CloudEvent", "of run run-other was published on " + bad} {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		m, _ := bus.NewMessage(msg, "bad", 5)
		called := false
		err = validated(func(context.Context, bus.Message) error { called = true; return nil })(ctx, m)
		if !errors.Is(err, events.ErrInvalid) || !strings.Contains(err.Error(), want) || called {
			t.Errorf("Validate = %v (handler called: %v), want ErrInvalid saying %q", err, called, want)
		}
	}
}

func TestRecoverTurnsAPanicIntoAPermanentFailure(t *testing.T) {
	t.Parallel()
	h := bus.Recover(discard)(func(context.Context, bus.Message) error { panic("boom") })
	err := h(context.Background(), bus.Message{})
	if err == nil || !strings.Contains(err.Error(), "handler panicked: boom") {
		t.Fatalf("Recover = %v", err)
	}
	// Permanent: dead-lettered at once, not retried.
	if !bus.IsPermanent(err) {
		t.Fatalf("a panic is retried: %v", err)
	}
}

func TestTimeoutEndsAHandlerThatWaitsForever(t *testing.T) {
	t.Parallel()
	timeouts := map[events.Name]time.Duration{events.BuildRequested: 50 * time.Millisecond, events.PushCompleted: time.Hour}
	h := bus.Timeout(func(n events.Name) time.Duration { return timeouts[n] })(func(ctx context.Context, m bus.Message) error {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(5 * time.Second):
			return errors.New("not stopped")
		}
	})
	start := time.Now()
	err := h(context.Background(), bus.Message{Consumer: "pusher", Name: events.BuildRequested})
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("the handler ran %s past a 50ms timeout", took)
	}
	var d *failure.DeadlineError
	if !errors.As(err, &d) || d.Timeout != 50*time.Millisecond || !strings.Contains(d.What, "pusher") || !strings.Contains(d.What, "build.requested") {
		t.Fatalf("cause %v, want a DeadlineError naming the consumer, the event and 50ms", err)
	}
	// The failure it becomes is a transport failure, final, whose hint
	// names the setting to change.
	f := failure.As(err)
	if f.Class != failure.Transport || f.Temporary() || !strings.Contains(f.Hint, "DIGESTLINE_HANDLER_TIMEOUT") {
		t.Fatalf("failure %+v", f)
	}
}

func TestTraceContinuesTheEventsTrace(t *testing.T) {
	t.Parallel()
	b, srv, _ := newBus(t)
	rec := tracetest.NewSpanRecorder()
	tp := trace.NewTracerProvider(trace.WithSpanProcessor(rec))
	ctx, parent := tp.Tracer("t").Start(context.Background(), "root")
	ev, err := events.NewEvent(b.Source(), events.BuildRequested, "run-trace", "app", bustest.BuildRequest())
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.NewBus(srv.JetStream, "/t", bus.WithTracerProvider(tp)).Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}
	parent.End()
	d := &deliveries{t: t, srv: srv}
	d.cons, err = srv.JetStream.CreateOrUpdateConsumer(context.Background(), events.StreamName, jetstream.ConsumerConfig{Durable: "tr", FilterSubject: events.BuildRequested.Subject("run-trace"), AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := d.next(5*time.Second, 5)
	h := validated(bus.Trace(tp.Tracer("t"), propagation.TraceContext{})(func(context.Context, bus.Message) error { return errors.New("refused") }))
	_ = h(context.Background(), m)
	spans := rec.Ended()
	last := spans[len(spans)-1]
	if last.Name() != "mw process build.requested" || last.Parent().TraceID() != parent.SpanContext().TraceID() {
		t.Fatalf("span %q in trace %s, want mw process build.requested in %s", last.Name(), last.Parent().TraceID(), parent.SpanContext().TraceID())
	}
	if last.Status().Description != "refused" {
		t.Errorf("span status %+v, want the handler's error", last.Status())
	}
}

func TestKeepAliveHoldsADeliveryPastAckWait(t *testing.T) {
	t.Parallel()
	b, srv, _ := newBus(t)
	d := newDeliveries(t, srv, b, "run-slow", time.Second)
	m, _ := d.next(5*time.Second, 5)
	h := bus.KeepAlive(300 * time.Millisecond)(func(context.Context, bus.Message) error {
		time.Sleep(2500 * time.Millisecond) // 2.5 × AckWait
		return nil
	})
	done := make(chan error, 1)
	go func() { done <- h(context.Background(), m) }()
	if again, ok := d.next(2*time.Second, 5); ok {
		t.Fatalf("redelivered (delivery %d) while the handler worked", again.Delivery)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestAcknowledgeRetryAndDeadLettering(t *testing.T) {
	t.Parallel()
	b, srv, _ := newBus(t)
	settle := func(h bus.Handler) bus.Handler {
		return bus.Acknowledge(discard)(bus.DeadLettering(b, 3)(bus.Retry(func(uint64) time.Duration { return 300 * time.Millisecond }, discard)(h)))
	}

	t.Run("success is acked", func(t *testing.T) {
		d := newDeliveries(t, srv, b, "run-ok", time.Second)
		m, _ := d.next(5*time.Second, 3)
		if err := settle(func(context.Context, bus.Message) error { return nil })(context.Background(), m); err != nil || m.Outcome() != bus.OutcomeAck {
			t.Fatalf("%v, outcome %q", err, m.Outcome())
		}
		if again, ok := d.next(1500*time.Millisecond, 3); ok {
			t.Fatalf("an acked event came back (delivery %d)", again.Delivery)
		}
	})

	t.Run("a transient failure comes back after the backoff, and is dead-lettered on the last try", func(t *testing.T) {
		d := newDeliveries(t, srv, b, "run-flaky", 10*time.Second)
		fail := settle(func(context.Context, bus.Message) error { return errors.New("registry away") })
		m, _ := d.next(5*time.Second, 3)
		start := time.Now()
		if err := fail(context.Background(), m); err == nil || m.Outcome() != bus.OutcomeRetry {
			t.Fatalf("%v, outcome %q", err, m.Outcome())
		}
		m, ok := d.next(5*time.Second, 3)
		if !ok || m.Delivery != 2 || time.Since(start) < 250*time.Millisecond {
			t.Fatalf("redelivery %d after %s, want delivery 2 after the 300ms backoff", m.Delivery, time.Since(start))
		}
		_ = fail(context.Background(), m)
		m, _ = d.next(5*time.Second, 3)
		if !m.LastTry {
			t.Fatalf("delivery %d of 3 is not the last try", m.Delivery)
		}
		_ = fail(context.Background(), m)
		if m.Outcome() != bus.OutcomeDeadLetter {
			t.Fatalf("last try settled as %q", m.Outcome())
		}
		if again, ok := d.next(time.Second, 3); ok {
			t.Fatalf("a dead-lettered event came back (delivery %d)", again.Delivery)
		}
		if !hasDeadLetter(t, srv, "run-flaky", "registry away", "3") {
			t.Fatalf("no dead letter for run-flaky: %v", srv.DeadLetters(t))
		}
	})

	t.Run("a permanent failure is dead-lettered at once", func(t *testing.T) {
		d := newDeliveries(t, srv, b, "run-bad", 10*time.Second)
		m, _ := d.next(5*time.Second, 3)
		_ = settle(func(context.Context, bus.Message) error { return bus.Permanent(errors.New("cannot be built")) })(context.Background(), m)
		if m.Outcome() != bus.OutcomeDeadLetter || !hasDeadLetter(t, srv, "run-bad", "cannot be built", "1") {
			t.Fatalf("outcome %q; dead letters %v", m.Outcome(), srv.DeadLetters(t))
		}
	})

	t.Run("a failure during shutdown is handed back, not dead-lettered", func(t *testing.T) {
		d := newDeliveries(t, srv, b, "run-stop", 10*time.Second)
		m, _ := d.next(5*time.Second, 1) // its only try
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(bus.ErrShutdown)
		_ = settle(func(ctx context.Context, _ bus.Message) error { return ctx.Err() })(ctx, m)
		if m.Outcome() != bus.OutcomeRetry {
			t.Fatalf("outcome %q", m.Outcome())
		}
		if again, ok := d.next(5*time.Second, 1); !ok || again.Delivery != 2 {
			t.Fatal("the event did not come back at once")
		}
		if hasDeadLetter(t, srv, "run-stop", "", "") {
			t.Fatal("dead-lettered on shutdown")
		}
	})
}

func hasDeadLetter(t *testing.T, srv *bustest.Server, run, reason, deliveries string) bool {
	for _, dl := range srv.DeadLetters(t) {
		if strings.HasSuffix(dl.Header.Get(bus.HeaderDLQSubject), "."+run) && strings.Contains(dl.Header.Get(bus.HeaderDLQReason), reason) &&
			(deliveries == "" || dl.Header.Get(bus.HeaderDLQDeliveries) == deliveries) {
			return true
		}
	}
	return false
}

func TestMetricsCountsEveryOutcome(t *testing.T) {
	t.Parallel()
	srv := bustest.NewServer(t)
	reader := metric.NewManualReader()
	b := bus.NewBus(srv.JetStream, "/t", bus.WithMeterProvider(metric.NewMeterProvider(metric.WithReader(reader))))
	d := newDeliveries(t, srv, b, "run-count", 10*time.Second)
	m, _ := d.next(5*time.Second, 5)
	if err := bus.Metrics(b)(bus.Acknowledge(discard)(func(context.Context, bus.Message) error { return nil }))(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			if sum, ok := mt.Data.(metricdata.Sum[int64]); ok && mt.Name == "digestline.events.handled" {
				for _, dp := range sum.DataPoints {
					if o, _ := dp.Attributes.Value("outcome"); o.AsString() == bus.OutcomeAck && dp.Value == 1 {
						return
					}
				}
			}
		}
	}
	t.Fatalf("no digestline.events.handled{outcome=ack} = 1 in %+v", rm)
}

// TestRouterHandsEachEventToItsHandlerAndStopsWithinTheGrace: events go to
// the handler of their name; at shutdown, a handler still running past the
// grace has its context cancelled with ErrShutdown, and its event is
// handed back for another instance, not failed or dead-lettered.
func TestRouterHandsEachEventToItsHandlerAndStopsWithinTheGrace(t *testing.T) {
	t.Parallel()
	srv := bustest.NewServer(t)
	b := bus.NewBus(srv.JetStream, "/t", bus.WithShutdownGrace(200*time.Millisecond))
	ctx := context.Background()
	var built, approved atomic.Int32
	started := make(chan struct{})
	var cause atomic.Value
	r := b.Router(bus.ConsumerSpec{Durable: "svc"})
	r.Handle(events.BuildRequested, func(ctx context.Context, m bus.Message) error {
		built.Add(1)
		req, _ := events.Decode[events.BuildRequest](m.Event)
		if req.Target != "registry.local/hangs:1" {
			return nil
		}
		close(started)
		<-ctx.Done()
		cause.Store(context.Cause(ctx))
		return ctx.Err()
	})
	r.Handle(events.PromotionApproved, func(context.Context, bus.Message) error { approved.Add(1); return nil })
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()

	if _, err := b.Start(ctx, events.BuildRequested, "run-a", "app", bustest.BuildRequest()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Start(ctx, events.PromotionApproved, "run-b", "app", events.Approval{Environment: "dev", Repository: "r/a", Digest: "sha256:" + strings.Repeat("a", 64), Tag: "dev"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "each event at its handler", func() bool { return built.Load() == 1 && approved.Load() == 1 })

	hang := bustest.BuildRequest()
	hang.Target = "registry.local/hangs:1"
	if _, err := b.Start(ctx, events.BuildRequested, "run-hang", "app", hang); err != nil {
		t.Fatal(err)
	}
	<-started
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the shutdown grace")
	}
	if c, _ := cause.Load().(error); !errors.Is(c, bus.ErrShutdown) {
		t.Fatalf("the running handler's context ended with %v, want ErrShutdown", c)
	}
	// The event is handed back: another instance gets it at once.
	next := b.Router(bus.ConsumerSpec{Durable: "svc"})
	var redelivered atomic.Uint64
	next.Handle(events.BuildRequested, func(_ context.Context, m bus.Message) error { redelivered.Store(m.Delivery); return nil })
	next.Handle(events.PromotionApproved, func(context.Context, bus.Message) error { return nil })
	nctx, nstop := context.WithCancel(ctx)
	ndone := make(chan error, 1)
	go func() { ndone <- next.Run(nctx) }()
	t.Cleanup(func() { nstop(); <-ndone })
	waitFor(t, "the handed-back event", func() bool { return redelivered.Load() == 2 })
	if dls := srv.DeadLetters(t); len(dls) != 0 {
		t.Fatalf("dead letters: %v", dls)
	}
}
