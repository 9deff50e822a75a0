// Package bustest starts an embedded NATS server with JetStream for tests,
// the way net/http/httptest starts an HTTP server.
package bustest

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is an embedded NATS server with JetStream and a provisioned bus.
type Server struct {
	NATS      *server.Server
	Conn      *nats.Conn
	JetStream jetstream.JetStream
}

// URL is the server's client URL.
func (s *Server) URL() string { return s.NATS.ClientURL() }

// NewServer starts a server on a free port with its store under t.TempDir(),
// provisions the digestline streams and buckets, and stops it at cleanup.
func NewServer(t testing.TB) *Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("embedded NATS did not start")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.Provision(ctx, js, bus.ProvisionOptions{}); err != nil {
		t.Fatal(err)
	}
	return &Server{NATS: ns, Conn: nc, JetStream: js}
}

// DeadLetters returns the messages in the dead-letter stream so far.
func (s *Server) DeadLetters(t testing.TB) []jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := s.JetStream.Stream(ctx, events.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *m)
	}
	return out
}

// Event is an event of a run as a test reads it.
type Event struct {
	Name  events.Name
	Event cloudevents.Event
}

// WaitRun waits (up to 30s) until the run has an event named one of until,
// and returns the run's events so far, in order.
func (s *Server) WaitRun(t testing.TB, runID string, until ...events.Name) []Event {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		raw, err := runs.Events(ctx, s.JetStream, runID)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		var out []Event
		done := false
		for _, b := range raw {
			ev, name, err := events.Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, Event{Name: name, Event: ev})
			done = done || slices.Contains(until, name)
		}
		if done {
			return out
		}
		if time.Now().After(deadline) {
			names := make([]events.Name, len(out))
			for i, e := range out {
				names[i] = e.Name
			}
			t.Fatalf("run %s has no %v after 30s; it has %v", runID, until, names)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Last returns the data of the run's last event named n, decoded as T.
func Last[T any](t testing.TB, evs []Event, n events.Name) T {
	t.Helper()
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Name == n {
			v, err := events.Decode[T](evs[i].Event)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("no %s among the run's events", n)
	var zero T
	return zero
}

// Count counts the run's events named n.
func Count(evs []Event, n events.Name) int {
	c := 0
	for _, e := range evs {
		if e.Name == n {
			c++
		}
	}
	return c
}

// BuildRequest is a build request the contract accepts, for tests that
// need an event to publish.
func BuildRequest() events.BuildRequest {
	return events.BuildRequest{Source: events.Source{Kind: events.SourceDir, Path: "/src"}, Target: "registry.local/app:lab"}
}

// LogBuffer collects log output that many goroutines write at once (a
// stack's services, a consumer's handlers), for a test to read.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Logged is a logger that drops what it is given but says, on the channel,
// that a record with message msg was logged (the first time, and each time
// after the channel was read).
func Logged(msg string) (*slog.Logger, <-chan struct{}) {
	h := onMessage{msg, make(chan struct{}, 1)}
	return slog.New(h), h.hit
}

type onMessage struct {
	msg string
	hit chan struct{}
}

func (h onMessage) Enabled(context.Context, slog.Level) bool { return true }
func (h onMessage) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h onMessage) WithGroup(string) slog.Handler            { return h }
func (h onMessage) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		select {
		case h.hit <- struct{}{}:
		default:
		}
	}
	return nil
}

// Serve runs a service whose durable consumer takes the events of n to h,
// until the test ends (a handler still running then is waited for: a test
// that holds one releases it in a cleanup of its own, made after Serve).
func Serve(t testing.TB, js jetstream.JetStream, durable string, n events.Name, h bus.Handler) {
	t.Helper()
	r := bus.NewBus(js, "/digestline/test/"+durable).Router(bus.ConsumerSpec{Durable: durable})
	r.Handle(n, h)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { stop(); <-done })
}

// Departed makes the durable consumer of a service that took the events
// of n once and is gone: it is there, and no worker asks it for any.
func Departed(t testing.TB, js jetstream.JetStream, durable string, n events.Name) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateOrUpdateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{
		Durable: durable, FilterSubjects: []string{n.Filter()}, AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatal(err)
	}
}
