package ship

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// waitNotes says why a run is quiet. Each time it has had no event for
// quiet, it asks the bus which services take the run's latest event that
// a service takes (bus.Idle: a push.stage is the pusher's report, taken by
// none, while the pusher holds the build.completed it works on) and, when
// one of them is not running, prints a [WAIT] line naming it: a run whose
// builder, pusher, verifier or reporter is down waits for it, and would
// otherwise wait in silence. A busy service, or a run waiting its turn
// behind others to one tag, gets no line. A note is printed again only
// when what it says changes.
type waitNotes struct {
	js     jetstream.JetStream
	runID  string
	out    io.Writer // safe for the timer's goroutine (progress.View)
	quiet  time.Duration
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // a check in flight

	mu      sync.Mutex
	timer   *time.Timer
	names   []events.Name // the run's events so far, each once, the latest last
	since   time.Time     // of the latest
	said    string
	stopped bool
}

// startWaitNotes starts watching a run that has just been requested.
func startWaitNotes(ctx context.Context, js jetstream.JetStream, runID string, out io.Writer, quiet time.Duration) *waitNotes {
	w := &waitNotes{js: js, runID: runID, out: out, quiet: quiet, names: []events.Name{events.BuildRequested}, since: time.Now()}
	w.ctx, w.cancel = context.WithCancel(ctx)
	w.timer = time.AfterFunc(quiet, w.check)
	return w
}

// event notes the run's latest event: the quiet starts again.
func (w *waitNotes) event(n events.Name) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.names = append(slices.DeleteFunc(w.names, func(m events.Name) bool { return m == n }), n)
	w.since, w.said = time.Now(), ""
	if !w.stopped {
		w.timer.Reset(w.quiet)
	}
}

// stop ends the watch, once a check in flight has returned: nothing is
// printed after it.
func (w *waitNotes) stop() {
	w.mu.Lock()
	w.stopped = true
	w.timer.Stop()
	w.mu.Unlock()
	w.cancel()
	w.wg.Wait()
}

// check runs on the timer's goroutine: it prints what the run waits for
// when a service it needs is not running, and looks again after quiet.
func (w *waitNotes) check() {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return
	}
	w.wg.Add(1)
	defer w.wg.Done()
	names, since := slices.Clone(w.names), w.since
	w.mu.Unlock()

	ctx, cancel := context.WithTimeout(w.ctx, busTimeout)
	defer cancel()
	waits, takers, err := w.waitsFor(ctx, names)

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || w.since != since {
		return // the run went on meanwhile
	}
	if note := waitNote(takers, err); note != "" && note != w.said {
		fmt.Fprintf(w.out, "[WAIT] nothing for %s since %s: %s\n", time.Since(since).Round(100*time.Millisecond), waits, note)
		w.said = note
	}
	w.timer.Reset(w.quiet)
}

// waitsFor is the latest of names that a service takes, and its takers;
// the first of them (build.requested) when none is taken.
func (w *waitNotes) waitsFor(ctx context.Context, names []events.Name) (events.Name, bus.Takers, error) {
	for i := len(names) - 1; i >= 0; i-- {
		takers, err := bus.Idle(ctx, w.js, names[i].Subject(w.runID))
		if err != nil || len(takers.Names) > 0 || i == 0 {
			return names[i], takers, err
		}
	}
	return "", bus.Takers{}, nil // no names: not reached
}

// waitNote is what a run waits for, from the takers of its latest event:
// none (no service ever took it) or those not running; "" when each runs
// (busy, or the run waits its turn) or the bus could not say.
func waitNote(t bus.Takers, err error) string {
	switch {
	case err != nil:
		return ""
	case len(t.Names) == 0:
		return "no service takes it (is the pipeline running? digestline dev, or its services: docs/deployment.md)"
	case len(t.Idle) > 0:
		return strings.Join(t.Idle, ", ") + " not running (no worker asks its consumer for events); the run goes on once it starts"
	}
	return ""
}
