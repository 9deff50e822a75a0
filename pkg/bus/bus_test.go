package bus_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// newBus starts an embedded server and returns a bus whose spans go to rec.
func newBus(t *testing.T) (*bus.Bus, *bustest.Server, *tracetest.SpanRecorder) {
	t.Helper()
	srv := bustest.NewServer(t)
	rec := tracetest.NewSpanRecorder()
	tp := trace.NewTracerProvider(trace.WithSpanProcessor(rec))
	b := bus.NewBus(srv.JetStream, "/digestline/test/1", bus.WithTracerProvider(tp),
		bus.WithRedeliveryBackoff(func(uint64) time.Duration { return 10 * time.Millisecond }))
	return b, srv, rec
}

// consume runs a consumer until the test ends.
func consume(t *testing.T, b *bus.Bus, spec bus.ConsumerSpec, names []events.Name, h bus.Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	r := b.Router(spec)
	for _, n := range names {
		r.Handle(n, h)
	}
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Consume: %v", err)
		}
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPublishIsDeduplicatedByEventID(t *testing.T) {
	t.Parallel()
	b, srv, _ := newBus(t)
	ctx := context.Background()
	ev, err := events.NewEvent(b.Source(), events.BuildRequested, "run-1", "app", bustest.BuildRequest())
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := b.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	stream, _ := srv.JetStream.Stream(ctx, events.StreamName)
	info, _ := stream.Info(ctx)
	if info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages after 3 publishes of one event, want 1", info.State.Msgs)
	}
}

func TestPublishRefusesDataThatBreaksTheContract(t *testing.T) {
	t.Parallel()
	b, _, _ := newBus(t)
	ev, _ := events.NewEvent(b.Source(), events.BuildRequested, "run-1", "app", events.BuildRequest{Source: events.Source{Kind: "ftp"}})
	if err := b.Publish(context.Background(), ev); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("Publish(invalid) = %v, want ErrInvalid", err)
	}
	ev, _ = events.NewEvent(b.Source(), events.BuildRequested, "run.1", "app", bustest.BuildRequest())
	if err := b.Publish(context.Background(), ev); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("Publish(run id that is two subject tokens) = %v, want ErrInvalid", err)
	}
}

// TestEmitterStoresInOrderOnceWaited: events sent without waiting are all
// stored, in the order they were emitted, by the time Wait returns; one that
// breaks the contract is Wait's error and nothing after it is sent; emitting
// them again (a redelivered handler) stores nothing twice.
func TestEmitterStoresInOrderOnceWaited(t *testing.T) {
	t.Parallel()
	b, srv, _ := newBus(t)
	ctx := context.Background()
	parent, _ := events.NewEvent(b.Source(), events.BuildRequested, "run-1", "app", bustest.BuildRequest())
	stage := func(i int) events.StageReport {
		return events.StageReport{Stage: fmt.Sprintf("stage %d", i), Status: "ok", Line: fmt.Sprintf("[STAGE] stage %d OK", i)}
	}
	for range 2 {
		em := b.Emitter(parent)
		for i := range 20 {
			em.Emit(ctx, events.PushStage, strconv.Itoa(i), stage(i))
		}
		if err := em.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := srv.JetStream.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		msg, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		ev, _, err := events.Parse(msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := events.Decode[events.StageReport](ev); got.Stage != stage(i).Stage {
			t.Fatalf("event %d is %q: out of order", i, got.Stage)
		}
	}
	if info, _ := cons.Info(ctx); info.NumPending != 0 {
		t.Fatalf("%d more events: emitting again stored duplicates", info.NumPending)
	}

	em := b.Emitter(parent)
	em.Emit(ctx, events.PushStage, "bad", events.StageReport{})
	em.Emit(ctx, events.PushStage, "after", stage(99))
	if err := em.Wait(ctx); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("Wait after an invalid event = %v, want ErrInvalid", err)
	}
	stream, _ := srv.JetStream.Stream(ctx, events.StreamName)
	if info, _ := stream.Info(ctx); info.State.Msgs != 20 {
		t.Fatalf("the stream holds %d events, want the 20 valid ones only", info.State.Msgs)
	}
}

func TestConsumeHandlesRetriesAndDeadLetters(t *testing.T) {
	t.Parallel()
	b, srv, rec := newBus(t)
	ctx := context.Background()

	var calls atomic.Int32
	var handled atomic.Value
	consume(t, b, bus.ConsumerSpec{Durable: "t", MaxDeliver: 3}, []events.Name{events.BuildRequested},
		func(ctx context.Context, m bus.Message) error {
			req, err := events.Decode[events.BuildRequest](m.Event)
			if err != nil {
				return err
			}
			switch req.Target {
			case "registry.local/flaky:1":
				if calls.Add(1) < 2 {
					return errors.New("transient")
				}
				handled.Store(m.Event.ID())
			case "registry.local/always-fails:1":
				return errors.New("still broken")
			case "registry.local/panics:1":
				panic("boom")
			}
			return nil
		})

	// A malformed message straight on the subject.
	if _, err := srv.JetStream.Publish(ctx, events.BuildRequested.Subject("run-bad"), []byte(`{"specversion":"1.0"`)); err != nil {
		t.Fatal(err)
	}
	publish := func(target string) cloudevents.Event {
		req := bustest.BuildRequest()
		req.Target = target
		ev, err := b.Start(ctx, events.BuildRequested, "run-"+strings.Split(target, "/")[1][:3], "app", req)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	flaky := publish("registry.local/flaky:1")
	publish("registry.local/always-fails:1")
	publish("registry.local/panics:1")

	waitFor(t, "the flaky event to succeed on redelivery", func() bool { return handled.Load() == flaky.ID() })
	waitFor(t, "three dead letters", func() bool { return len(srv.DeadLetters(t)) == 3 })

	reasons := map[string]string{}
	for _, m := range srv.DeadLetters(t) {
		if !strings.HasPrefix(m.Subject, events.DeadLetterPrefix) {
			t.Errorf("dead letter on subject %q", m.Subject)
		}
		reasons[m.Header.Get(bus.HeaderDLQReason)] = m.Header.Get(bus.HeaderDLQDeliveries)
	}
	want := map[string]string{"invalid event: not a structured CloudEvent": "1", "still broken": "3", "handler panicked: boom": "1"}
	for prefix, deliveries := range want {
		found := false
		for reason, n := range reasons {
			if strings.HasPrefix(reason, prefix) {
				found = true
				if n != deliveries {
					t.Errorf("%q dead-lettered after %s deliveries, want %s", prefix, n, deliveries)
				}
			}
		}
		if !found {
			t.Errorf("no dead letter with reason %q; have %v", prefix, reasons)
		}
	}

	// The consumer has nothing pending: everything was acked or terminated.
	cons, err := srv.JetStream.Consumer(ctx, events.StreamName, "t")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the consumer to settle", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})

	// Each handled event got a consumer span carrying the run id.
	var spans int
	for _, s := range rec.Ended() {
		if strings.HasPrefix(s.Name(), "t process build.requested") {
			spans++
		}
	}
	if spans < 3 {
		t.Errorf("%d consumer spans, want at least one per valid delivery", spans)
	}
}

func TestTraceContextTravelsInTheEvent(t *testing.T) {
	t.Parallel()
	b, _, rec := newBus(t)
	ctx, parent := b.Tracer().Start(context.Background(), "root")
	if _, err := b.Start(ctx, events.BuildRequested, "run-1", "app", bustest.BuildRequest()); err != nil {
		t.Fatal(err)
	}
	parent.End()
	var got atomic.Value
	consume(t, b, bus.ConsumerSpec{Durable: "tr"}, []events.Name{events.BuildRequested}, func(ctx context.Context, m bus.Message) error {
		got.Store(m.Event.Extensions()[events.ExtTraceParent])
		return nil
	})
	waitFor(t, "the event", func() bool { return got.Load() != nil })
	tp, _ := got.Load().(string)
	if !strings.Contains(tp, parent.SpanContext().TraceID().String()) {
		t.Fatalf("traceparent %q does not carry trace %s", tp, parent.SpanContext().TraceID())
	}
	waitFor(t, "the consumer span", func() bool {
		for _, s := range rec.Ended() {
			if s.Name() == "tr process build.requested" {
				return s.Parent().TraceID() == parent.SpanContext().TraceID()
			}
		}
		return false
	})
}

// TestBucketsReadDirectlyFromTheirOneCopy: on one server every bucket, the
// index and the run log are read by direct gets (no JetStream API request, no
// advisory), and every bucket is a working key-value store that reads
// what was written the moment before, also when it was first made by
// jetstream's own CreateKeyValue. (With replicas reads go to the leader:
// systemtest's TestRunsSurviveLosingAClusterNode checks that.)
func TestBucketsReadDirectlyFromTheirOneCopy(t *testing.T) {
	t.Parallel()
	srv := bustest.NewServer(t)
	ctx := context.Background()
	if _, err := srv.JetStream.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: events.VerifiedBucket, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if err := bus.Provision(ctx, srv.JetStream, bus.ProvisionOptions{}); err != nil {
		t.Fatalf("provision over a bucket made by CreateKeyValue: %v", err)
	}
	for _, name := range []string{events.IndexStream, events.RunLogStream} {
		if st, err := srv.JetStream.Stream(ctx, name); err != nil || !st.CachedInfo().Config.AllowDirect {
			t.Errorf("%s: reads are API requests (allow_direct off): %v", name, err)
		}
	}
	for _, bucket := range []string{events.PromotionsBucket, events.VerifiedBucket, events.HistoryBucket} {
		st, err := srv.JetStream.Stream(ctx, "KV_"+bucket)
		if err != nil {
			t.Fatal(err)
		}
		if !st.CachedInfo().Config.AllowDirect {
			t.Errorf("%s: reads are API requests (allow_direct off)", bucket)
		}
		kv, err := srv.JetStream.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, "a.b", []byte("1")); err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Create(ctx, "a.b", []byte("2")); !errors.Is(err, jetstream.ErrKeyExists) {
			t.Errorf("%s: Create of an existing key = %v", bucket, err)
		}
		if e, err := kv.Get(ctx, "a.b"); err != nil || string(e.Value()) != "1" {
			t.Errorf("%s: Get = %v %v", bucket, e, err)
		}
		if _, err := kv.Put(ctx, "a.b", []byte("3")); err != nil {
			t.Fatal(err)
		}
		if e, err := kv.Get(ctx, "a.b"); err != nil || string(e.Value()) != "3" {
			t.Errorf("%s: Get right after a Put = %v %v", bucket, e, err)
		}
		if err := kv.Delete(ctx, "a.b"); err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Get(ctx, "a.b"); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("%s: Get after Delete = %v", bucket, err)
		}
	}
}

// TestReplayRefusesASubjectOutsideTheContract: a dead letter from before
// run ids were in subjects cannot go back where it came from; Replay says
// so and keeps it, instead of failing with the stream's silence.
func TestReplayRefusesASubjectOutsideTheContract(t *testing.T) {
	t.Parallel()
	srv := bustest.NewServer(t)
	ctx := context.Background()
	dl := nats.NewMsg(events.DeadLetterPrefix + "digestline.build.requested")
	dl.Data = []byte(`{}`)
	dl.Header.Set(bus.HeaderDLQSubject, "digestline.build.requested")
	ack, err := srv.JetStream.PublishMsg(ctx, dl)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Replay(ctx, srv.JetStream, ack.Sequence); err == nil || !strings.Contains(err.Error(), "not digestline.<event>.<run id>") {
		t.Fatalf("Replay = %v, want it refused with the reason", err)
	}
	if len(srv.DeadLetters(t)) != 1 {
		t.Error("the refused dead letter is gone")
	}
}

// TestProvisioningAgainChangesNothing: a service starting on a provisioned
// bus updates no stream (an update racing a consumer's creation trips a
// data race in nats-server), while one that changed is updated
// (TestBucketsReadFromTheLeader).
func TestProvisioningAgainChangesNothing(t *testing.T) {
	t.Parallel()
	srv := bustest.NewServer(t) // provisioned once
	updates, err := srv.Conn.SubscribeSync("$JS.API.STREAM.UPDATE.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.Provision(context.Background(), srv.JetStream, bus.ProvisionOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := updates.Pending(); n != 0 {
		msg, _ := updates.NextMsg(0)
		t.Fatalf("provisioning again sent %d stream updates, the first %s", n, msg.Subject)
	}
}
