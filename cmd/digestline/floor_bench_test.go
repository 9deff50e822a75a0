package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// benchFloor is what the contract's events alone cost a run on the chosen
// foundations, with nothing else done: the floor under
// BenchmarkLoad/paced's own-cpu-ms/run. The same 200 runs at the same
// pace go through an embedded NATS server with JetStream (a file store in
// TMPDIR, an in-process connection, as `digestline dev`), each run the 24
// events a promoted run publishes (build.requested, build.completed, a
// push's 8 push.stage and push.completed, verify.completed,
// promotion.approved, the tag move's 8 stages and push.completed,
// verify.completed, promoted), about a kilobyte each as the real ones
// are. Four workers stand for the services and one for the run indexer,
// each a durable pull consumer of the events the service takes; a worker
// decodes each CloudEvent with the SDK, publishes the events that answer
// it (each publish acknowledged by the server), and acknowledges the
// delivery. Nothing is stored, read or checked besides: no buckets, no
// run log, no schema, no spans, no logs.
//
// With stores, the workers also make the reads and writes a promoted run
// makes of the stores issue 28 asked for (BenchmarkLoad/paced, counted by
// subject): 17 reads of a key in a bucket, 11 writes over the revision
// read, 10 appends to index lists, and the run read back from a run log
// (a stream that sources the events by run) with one batched direct get
// when it ends.
func benchFloor(b *testing.B, perSecond int, stores bool) {
	const runs = 200
	ctx := context.Background()
	ns, err := server.NewServer(&server.Options{
		ServerName: "floor", Host: "127.0.0.1", Port: -1,
		JetStream: true, StoreDir: b.TempDir(), NoSigs: true, NoLog: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	ns.Start()
	b.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(15 * time.Second) {
		b.Fatal("embedded NATS did not start")
	}
	nc, err := nats.Connect(ns.ClientURL(), nats.InProcessServer(ns))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "FLOOR", Subjects: []string{"digestline.>"}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute,
	}); err != nil {
		b.Fatal(err)
	}
	f := &floor{js: js, stores: stores}
	if stores {
		f.provision(ctx, b)
	}
	stages := []string{"auth", "manifest-check", "blob-check", "mount", "upload", "manifest-publish", "tag-update", "referrers"}
	workers := map[string]struct {
		takes  []string
		answer func(ctx context.Context, run string, data map[string]any) error
	}{
		"builder": {[]string{"build.requested"}, func(ctx context.Context, run string, _ map[string]any) error {
			if err := f.store(ctx, run, "r BLOBS.layer", "r BLOBS.config"); err != nil {
				return err
			}
			return f.publish(ctx, run, "build.completed", map[string]any{"phase": "push"})
		}},
		"pusher": {[]string{"build.completed", "promotion.approved"}, func(ctx context.Context, run string, data map[string]any) error {
			if err := f.store(ctx, run, "w TAGS.move", "w TAGS.ledger"); err != nil {
				return err
			}
			for _, s := range stages {
				if err := f.publish(ctx, run, "push.stage", map[string]any{"stage": s}); err != nil {
					return err
				}
			}
			return f.publish(ctx, run, "push.completed", data)
		}},
		"verifier": {[]string{"push.completed"}, func(ctx context.Context, run string, data map[string]any) error {
			ops := []string{"w VERIFIED.digest"}
			if data["phase"] == "push" {
				ops = append(ops, "r VERIFIED.proven")
			}
			if err := f.store(ctx, run, ops...); err != nil {
				return err
			}
			return f.publish(ctx, run, "verify.completed", data)
		}},
		"reporter": {[]string{"verify.completed"}, func(ctx context.Context, run string, data map[string]any) error {
			if data["phase"] == "push" {
				if err := f.store(ctx, run, "r CONTROLS.freeze", "r PROMOTIONS.env", "w HISTORY.order"); err != nil {
					return err
				}
				return f.publish(ctx, run, "promotion.approved", map[string]any{"phase": "promote"})
			}
			if err := f.store(ctx, run, "r CONTROLS.pin", "w PROMOTIONS.env", "w HISTORY.entry",
				"i history.all", "i history.env", "i history.at", "i history.digest", "i history.repo"); err != nil {
				return err
			}
			return f.publish(ctx, run, "promoted", data)
		}},
		"run-index": {[]string{"build.requested", "build.completed", "promoted"}, func(ctx context.Context, run string, data map[string]any) error {
			switch data["phase"] {
			case "build":
				return f.store(ctx, run, "w RUNS.summary")
			case "promote":
				return f.store(ctx, run, "l", "w RUNS.summary",
					"i runs.all", "i runs.status", "i runs.digest", "i runs.repo", "i runs.id")
			}
			return nil
		}},
	}
	// The workers' owner: once the benchmark is done, each stops, and a
	// delivery it is still handling ends before the connection closes.
	var consuming []jetstream.ConsumeContext
	var handling sync.WaitGroup
	b.Cleanup(func() {
		for _, cc := range consuming {
			cc.Stop()
		}
		handling.Wait()
	})
	for name, w := range workers {
		filters := make([]string, len(w.takes))
		for i, t := range w.takes {
			filters[i] = "digestline." + t + ".*"
		}
		cons, err := js.CreateOrUpdateConsumer(ctx, "FLOOR", jetstream.ConsumerConfig{
			Durable: name, FilterSubjects: filters, AckPolicy: jetstream.AckExplicitPolicy,
		})
		if err != nil {
			b.Fatal(err)
		}
		cc, err := cons.Consume(func(msg jetstream.Msg) {
			handling.Add(1)
			defer handling.Done()
			if err := f.handle(ctx, msg, w.answer); err != nil {
				b.Errorf("%s: %v", name, err)
				return
			}
			_ = msg.Ack()
		})
		if err != nil {
			b.Fatal(err)
		}
		consuming = append(consuming, cc)
	}

	var cpu time.Duration
	var msgs uint64
	for b.Loop() {
		cpuBefore, statsBefore := cpuTime(b), nc.Stats()
		cons, err := js.OrderedConsumer(ctx, "FLOOR", jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{"digestline.promoted.*"}, DeliverPolicy: jetstream.DeliverNewPolicy,
		})
		if err != nil {
			b.Fatal(err)
		}
		iter, err := cons.Messages()
		if err != nil {
			b.Fatal(err)
		}
		giveUp := time.AfterFunc(2*time.Minute, iter.Stop)
		sent := make(chan error, 1)
		go func() { // the sender: the run's owner waits for it below
			t := time.NewTicker(time.Second / time.Duration(perSecond))
			defer t.Stop()
			for i := range runs {
				if i > 0 {
					<-t.C
				}
				if err := f.publish(ctx, uuid.NewString(), "build.requested", map[string]any{"phase": "build"}); err != nil {
					sent <- err
					return
				}
			}
			sent <- nil
		}()
		for promoted := 0; promoted < runs; promoted++ {
			if _, err := iter.Next(); err != nil {
				b.Fatalf("%d of %d runs promoted: %v", promoted, runs, err)
			}
		}
		cpu += cpuTime(b) - cpuBefore
		stats := nc.Stats()
		msgs += stats.InMsgs - statsBefore.InMsgs + stats.OutMsgs - statsBefore.OutMsgs
		giveUp.Stop()
		iter.Stop()
		if err := <-sent; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(runs*b.N), "cpu-ms/run")
	// Counted as benchLoad counts them: what the one connection sent to
	// the server and received from it.
	b.ReportMetric(float64(msgs)/float64(runs*b.N), "msgs/run")
}

// handle decodes a delivered CloudEvent and answers it.
func (f *floor) handle(ctx context.Context, msg jetstream.Msg, answer func(context.Context, string, map[string]any) error) error {
	var ev event.Event
	if err := ev.UnmarshalJSON(msg.Data()); err != nil {
		return err
	}
	var data map[string]any
	if err := ev.DataAs(&data); err != nil {
		return err
	}
	if answer == nil {
		return nil
	}
	return answer(ctx, fmt.Sprint(ev.Extensions()["runid"]), data)
}

// floorPadding makes a floor event about as large as the pipeline's are
// on average (1.1 KB stored, with the subject and headers).
var floorPadding = strings.Repeat("x", 700)

// floor publishes the floor's events, and reads and writes its stores.
type floor struct {
	js      jetstream.JetStream
	stores  bool
	buckets map[string]jetstream.KeyValue
}

// provision makes the stores: the buckets (direct gets, a value a key),
// the index stream and the run log, as bus.Provision makes them.
func (f *floor) provision(ctx context.Context, b *testing.B) {
	f.buckets = map[string]jetstream.KeyValue{}
	for _, name := range []string{"BLOBS", "TAGS", "VERIFIED", "CONTROLS", "PROMOTIONS", "HISTORY", "RUNS"} {
		kv, err := f.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "FLOOR_" + name, Storage: jetstream.FileStorage})
		if err != nil {
			b.Fatal(err)
		}
		f.buckets[name] = kv
	}
	for _, cfg := range []jetstream.StreamConfig{
		{Name: "FLOOR_INDEX", Subjects: []string{"index.>"}, Storage: jetstream.FileStorage, AllowDirect: true},
		{Name: "FLOOR_RUNLOG", Storage: jetstream.FileStorage, AllowDirect: true, Sources: []*jetstream.StreamSource{{
			Name: "FLOOR", SubjectTransforms: []jetstream.SubjectTransformConfig{{
				Source: "digestline.*.*.*", Destination: "runlog.{{wildcard(3)}}.{{wildcard(1)}}.{{wildcard(2)}}"}},
		}}},
	} {
		if _, err := f.js.CreateStream(ctx, cfg); err != nil {
			b.Fatal(err)
		}
	}
}

// store makes a run's reads and writes, each op "r BUCKET.key" (a read),
// "w BUCKET.key" (a read, then a write over its revision), "i list" (an
// append to an index list) or "l" (the run read from the run log).
func (f *floor) store(ctx context.Context, run string, ops ...string) error {
	if !f.stores {
		return nil
	}
	value := []byte(strings.Repeat("v", 400))
	for _, op := range ops {
		kind, what, _ := strings.Cut(op, " ")
		bucket, key, _ := strings.Cut(what, ".")
		key += "." + run
		var err error
		switch kind {
		case "r", "w":
			var rev uint64
			entry, gerr := f.buckets[bucket].Get(ctx, key)
			if gerr == nil {
				rev = entry.Revision()
			} else if !errors.Is(gerr, jetstream.ErrKeyNotFound) {
				return gerr
			}
			if kind == "w" {
				_, err = f.buckets[bucket].Update(ctx, key, value, rev)
			}
		case "i":
			_, err = f.js.Publish(ctx, "index."+what+"."+run[:4], []byte(run))
		case "l":
			err = f.readRun(ctx, run)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return nil
}

// readRun reads the run's events from the run log with one batched direct
// get (ADR-31), as runs.Events does.
func (f *floor) readRun(ctx context.Context, run string) error {
	nc := f.js.Conn()
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	req := fmt.Sprintf(`{"seq":1,"next_by_subj":"runlog.%s.>","batch":64}`, run)
	if err := nc.PublishRequest("$JS.API.DIRECT.GET.FLOOR_RUNLOG", inbox, []byte(req)); err != nil {
		return err
	}
	for {
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			return err
		}
		if msg.Header.Get("Status") != "" { // 204: the batch's end; 404: none yet
			return nil
		}
	}
}

// publish publishes the CloudEvent name of run with data, padded to about
// a kilobyte, and waits for the server to acknowledge it. Its id is
// derived from the run and the name (and the data), as the pipeline's are.
func (f *floor) publish(ctx context.Context, run, name string, data map[string]any) error {
	data["detail"] = floorPadding
	ev := event.New()
	ev.SetID(uuid.NewSHA1(uuid.NameSpaceOID, []byte(fmt.Sprint(run, name, data))).String())
	ev.SetSource("digestline/floor")
	ev.SetType("dev.digestline." + name + ".v1")
	ev.SetTime(time.Now())
	ev.SetExtension("runid", run)
	if err := ev.SetData(event.ApplicationJSON, data); err != nil {
		return err
	}
	body, err := ev.MarshalJSON()
	if err != nil {
		return err
	}
	msg := nats.NewMsg("digestline." + name + "." + run)
	msg.Data = body
	msg.Header.Set(jetstream.MsgIDHeader, ev.ID())
	_, err = f.js.PublishMsg(ctx, msg)
	return err
}
