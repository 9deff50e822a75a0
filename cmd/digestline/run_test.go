package main

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/services/reporter"
)

// run show says which service a running run waits for, and nothing of it
// once the run ended.
func TestRunShowSaysWhatARunningRunWaitsFor(t *testing.T) {
	run := &runs.Run{ID: "r1", Status: runs.Running, WaitsFor: "pusher", Started: time.Now().Add(-time.Minute), Updated: time.Now().Add(-time.Minute)}
	var out bytes.Buffer
	printRun(&out, run, "http://api")
	if !strings.Contains(out.String(), "waits    for the pusher, its latest event 1m0s ago") {
		t.Fatalf("a running run:\n%s", out.String())
	}
	run.Status = runs.Promoted
	out.Reset()
	printRun(&out, run, "http://api")
	if strings.Contains(out.String(), "waits") {
		t.Fatalf("an ended run:\n%s", out.String())
	}
}

// run follow of a run that waits for a service that is not running says
// so, from the reporter's summary, instead of waiting in silence.
func TestRunFollowSaysWhichServiceARunWaitsFor(t *testing.T) {
	srv := bustest.NewServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { // the reporter alone: no builder ever ran
		done <- reporter.Run(ctx, reporter.Config{Deps: service.Deps{JetStream: srv.JetStream, Logger: slog.New(slog.DiscardHandler)}, Listener: ln})
	}()
	t.Cleanup(func() { cancel(); <-done })
	ev, err := events.NewEvent("/t", events.BuildRequested, "0ld0-run", "app", bustest.BuildRequest())
	if err != nil {
		t.Fatal(err)
	}
	ev.SetTime(time.Now().Add(-time.Minute))
	if err := bus.NewBus(srv.JetStream, "/t").Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}

	defer func(q time.Duration) { quietRun = q }(quietRun)
	quietRun = 200 * time.Millisecond
	var out, errOut bytes.Buffer
	cmd := newRootCommand()
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs([]string{"run", "follow", "0ld0", "--api", "http://" + ln.Addr().String(), "--timeout", "3s"})
	if err := cmd.ExecuteContext(ctx); err == nil || !strings.Contains(err.Error(), "has not ended") {
		t.Fatalf("run follow of a run that never ends: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "[WAIT] nothing for ") || strings.Count(out.String(), "[WAIT]") != 1 ||
		!strings.Contains(out.String(), "no builder has ever run on this bus") {
		t.Fatalf("run follow does not say once what the run waits for:\n%s", out.String())
	}
}
