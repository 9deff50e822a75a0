package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/events/eventstest"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func validRequest() events.BuildRequest {
	return events.BuildRequest{Source: events.Source{Kind: events.SourceDir, Path: "/src"}, Target: "registry.local/app:lab"}
}

func TestNamesDeriveTypeAndSubject(t *testing.T) {
	t.Parallel()
	if got := events.BuildRequested.Type(); got != "dev.digestline.build.requested.v1" {
		t.Errorf("Type() = %q", got)
	}
	if got := events.PushStage.Subject("run-1"); got != "digestline.push.stage.run-1" {
		t.Errorf("Subject() = %q", got)
	}
	if got := events.Promoted.Filter(); got != "digestline.promoted.*" {
		t.Errorf("Filter() = %q", got)
	}
	for _, bad := range []string{"", "a.b", "a b", "*", ">", strings.Repeat("r", 129)} {
		if events.CheckRunID(bad) == nil {
			t.Errorf("run id %q accepted: it is not one subject token", bad)
		}
	}
	for _, typ := range []string{"dev.digestline.build.requested.v2", "dev.digestline.nope.v1", "com.example.build.requested.v1"} {
		if _, ok := events.NameOfType(typ); ok {
			t.Errorf("NameOfType(%q) accepted an unknown type", typ)
		}
	}
}

func TestParseRejectsWhatTheContractForbids(t *testing.T) {
	t.Parallel()
	good, err := events.NewEvent("/test", events.BuildRequested, "run-1", "app", validRequest())
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(m map[string]any)) []byte {
		b, _ := json.Marshal(good)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		f(m)
		out, _ := json.Marshal(m)
		return out
	}
	cases := map[string]struct {
		body []byte
		want string
	}{
		"not json":           {[]byte("{nope"), "not a structured CloudEvent"},
		"no id":              {mutate(func(m map[string]any) { delete(m, "id") }), "id"},
		"unknown type":       {mutate(func(m map[string]any) { m["type"] = "dev.digestline.build.exploded.v1" }), "unknown event type"},
		"future version":     {mutate(func(m map[string]any) { m["type"] = "dev.digestline.build.requested.v9" }), "unknown event type"},
		"no run id":          {mutate(func(m map[string]any) { delete(m, "runid") }), "runid"},
		"wrong content type": {mutate(func(m map[string]any) { m["datacontenttype"] = "text/plain" }), "text/plain"},
		"missing field":      {mutate(func(m map[string]any) { delete(m["data"].(map[string]any), "target") }), "target"},
		"bad source kind": {mutate(func(m map[string]any) {
			m["data"].(map[string]any)["source"] = map[string]any{"kind": "ftp"}
		}), "kind"},
		"wrong field type": {mutate(func(m map[string]any) { m["data"].(map[string]any)["target"] = 42 }), "target"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, _, err := events.Parse(tc.body)
			if !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("Parse() error = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
	b, _ := json.Marshal(good)
	if _, name, err := events.Parse(b); err != nil || name != events.BuildRequested {
		t.Fatalf("Parse(valid) = %q, %v", name, err)
	}
}

func TestFollowDerivesStableIDs(t *testing.T) {
	t.Parallel()
	parent, _ := events.NewEvent("/test", events.BuildRequested, "run-1", "app", validRequest())
	data := events.NewFailure(failure.Errorf(failure.Input, "fix it", "x"))
	a, _ := events.Follow("/b", parent, events.BuildFailed, "", data)
	b, _ := events.Follow("/b", parent, events.BuildFailed, "", data)
	c, _ := events.Follow("/b", parent, events.BuildFailed, "other", data)
	if a.ID() != b.ID() {
		t.Errorf("same parent, name and key gave ids %s and %s", a.ID(), b.ID())
	}
	if a.ID() == c.ID() {
		t.Error("different keys gave the same id")
	}
	if events.RunID(a) != "run-1" || a.Subject() != "app" {
		t.Errorf("run id %q, subject %q not carried over", events.RunID(a), a.Subject())
	}
}

// newBus starts an embedded server and returns a bus whose spans go to rec.
func newBus(t *testing.T) (*events.Bus, *eventstest.Server, *tracetest.SpanRecorder) {
	t.Helper()
	srv := eventstest.NewServer(t)
	rec := tracetest.NewSpanRecorder()
	tp := trace.NewTracerProvider(trace.WithSpanProcessor(rec))
	bus := events.NewBus(srv.JetStream, "/digestline/test/1", events.WithTracerProvider(tp),
		events.WithRedeliveryBackoff(func(uint64) time.Duration { return 10 * time.Millisecond }))
	return bus, srv, rec
}

// consume runs a consumer until the test ends.
func consume(t *testing.T, bus *events.Bus, spec events.ConsumerSpec, names []events.Name, h events.Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	r := bus.Router(spec)
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
	bus, srv, _ := newBus(t)
	ctx := context.Background()
	ev, err := events.NewEvent(bus.Source(), events.BuildRequested, "run-1", "app", validRequest())
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := bus.Publish(ctx, ev); err != nil {
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
	bus, _, _ := newBus(t)
	ev, _ := events.NewEvent(bus.Source(), events.BuildRequested, "run-1", "app", events.BuildRequest{Source: events.Source{Kind: "ftp"}})
	if err := bus.Publish(context.Background(), ev); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("Publish(invalid) = %v, want ErrInvalid", err)
	}
	ev, _ = events.NewEvent(bus.Source(), events.BuildRequested, "run.1", "app", validRequest())
	if err := bus.Publish(context.Background(), ev); !errors.Is(err, events.ErrInvalid) {
		t.Fatalf("Publish(run id that is two subject tokens) = %v, want ErrInvalid", err)
	}
}

// TestRunEventsReadsOneRunInOrder: a run's history is what its subjects
// hold, in stream order, without the other runs' events and without an
// event that claims another run than its subject says.
func TestRunEventsReadsOneRunInOrder(t *testing.T) {
	t.Parallel()
	bus, srv, _ := newBus(t)
	ctx := context.Background()
	var want []string
	for i := range 3 {
		for _, run := range []string{"run-a", "run-b"} {
			ev, err := bus.Start(ctx, events.BuildRequested, run, "app", validRequest())
			if err != nil {
				t.Fatal(err)
			}
			if run == "run-a" {
				want = append(want, ev.ID())
			}
			if i == 2 && run == "run-a" {
				next, err := bus.Emit(ctx, ev, events.BuildFailed, "", events.NewFailure(failure.Errorf(failure.Input, "yes", "no")))
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, next.ID())
			}
		}
	}
	// run-b's event, filed under run-a's subject by a careless publisher;
	// and run-a's first event stored again, as a replayed dead letter is.
	stray, _ := events.NewEvent(bus.Source(), events.BuildRequested, "run-b", "app", validRequest())
	stream, err := srv.JetStream.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := stream.GetLastMsgForSubject(ctx, events.BuildRequested.Subject("run-a"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(stray)
	for _, b := range [][]byte{body, stored.Data} {
		if _, err := srv.JetStream.Publish(ctx, events.BuildRequested.Subject("run-a"), b); err != nil {
			t.Fatal(err)
		}
	}

	raw, err := events.RunEvents(ctx, srv.JetStream, "run-a")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range raw {
		ev, _, err := events.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev.ID())
	}
	if !slices.Equal(got, want) {
		t.Errorf("run-a's events %v, want %v", got, want)
	}
	if raw, err := events.RunEvents(ctx, srv.JetStream, "run-c"); err != nil || len(raw) != 0 {
		t.Errorf("a run with no events: %d events, %v", len(raw), err)
	}
	if _, err := events.RunEvents(ctx, srv.JetStream, "run.*"); err == nil {
		t.Error("a run id with wildcards was read")
	}
}

// TestEmitterStoresInOrderOnceWaited: events sent without waiting are all
// stored, in the order they were emitted, by the time Wait returns; one that
// breaks the contract is Wait's error and nothing after it is sent; emitting
// them again (a redelivered handler) stores nothing twice.
func TestEmitterStoresInOrderOnceWaited(t *testing.T) {
	t.Parallel()
	bus, srv, _ := newBus(t)
	ctx := context.Background()
	parent, _ := events.NewEvent(bus.Source(), events.BuildRequested, "run-1", "app", validRequest())
	stage := func(i int) registry.StageReport {
		return registry.StageReport{Stage: fmt.Sprintf("stage %d", i), Status: "ok", Line: fmt.Sprintf("[STAGE] stage %d OK", i)}
	}
	for range 2 {
		em := bus.Emitter(parent)
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
		if got, _ := events.Decode[registry.StageReport](ev); got.Stage != stage(i).Stage {
			t.Fatalf("event %d is %q: out of order", i, got.Stage)
		}
	}
	if info, _ := cons.Info(ctx); info.NumPending != 0 {
		t.Fatalf("%d more events: emitting again stored duplicates", info.NumPending)
	}

	em := bus.Emitter(parent)
	em.Emit(ctx, events.PushStage, "bad", registry.StageReport{})
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
	bus, srv, rec := newBus(t)
	ctx := context.Background()

	var calls atomic.Int32
	var handled atomic.Value
	consume(t, bus, events.ConsumerSpec{Durable: "t", MaxDeliver: 3}, []events.Name{events.BuildRequested},
		func(ctx context.Context, m events.Message) error {
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
		req := validRequest()
		req.Target = target
		ev, err := bus.Start(ctx, events.BuildRequested, "run-"+strings.Split(target, "/")[1][:3], "app", req)
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
		reasons[m.Header.Get(events.HeaderDLQReason)] = m.Header.Get(events.HeaderDLQDeliveries)
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
	bus, _, rec := newBus(t)
	ctx, parent := bus.Tracer().Start(context.Background(), "root")
	if _, err := bus.Start(ctx, events.BuildRequested, "run-1", "app", validRequest()); err != nil {
		t.Fatal(err)
	}
	parent.End()
	var got atomic.Value
	consume(t, bus, events.ConsumerSpec{Durable: "tr"}, []events.Name{events.BuildRequested}, func(ctx context.Context, m events.Message) error {
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

// TestBucketsReadFromTheLeader: every bucket is a working key-value store
// whose reads are not served by lagging replicas (no direct gets), also
// when it was first made by jetstream's own CreateKeyValue (direct gets on).
func TestBucketsReadFromTheLeader(t *testing.T) {
	t.Parallel()
	srv := eventstest.NewServer(t)
	ctx := context.Background()
	if _, err := srv.JetStream.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: events.VerifiedBucket, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if err := events.Provision(ctx, srv.JetStream, events.ProvisionOptions{}); err != nil {
		t.Fatalf("provision over a bucket made by CreateKeyValue: %v", err)
	}
	for _, bucket := range []string{events.PromotionsBucket, events.VerifiedBucket, events.HistoryBucket} {
		st, err := srv.JetStream.Stream(ctx, "KV_"+bucket)
		if err != nil {
			t.Fatal(err)
		}
		if st.CachedInfo().Config.AllowDirect {
			t.Errorf("%s: reads may come from a lagging replica (allow_direct)", bucket)
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
	srv := eventstest.NewServer(t)
	ctx := context.Background()
	dl := nats.NewMsg(events.DeadLetterPrefix + "digestline.build.requested")
	dl.Data = []byte(`{}`)
	dl.Header.Set(events.HeaderDLQSubject, "digestline.build.requested")
	ack, err := srv.JetStream.PublishMsg(ctx, dl)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Replay(ctx, srv.JetStream, ack.Sequence); err == nil || !strings.Contains(err.Error(), "not digestline.<event>.<run id>") {
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
	srv := eventstest.NewServer(t) // provisioned once
	updates, err := srv.Conn.SubscribeSync("$JS.API.STREAM.UPDATE.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := events.Provision(context.Background(), srv.JetStream, events.ProvisionOptions{}); err != nil {
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
