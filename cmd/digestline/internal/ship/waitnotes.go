package ship

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// waitNotes says why a run is quiet. Each time it has had no event for
// quiet, it finds the service the run waits for — the taker of its latest
// event that has one (events.Name.Taker: a push.stage is the pusher's
// report, while the pusher holds the build.completed it works on) — and,
// when that service is not running (bus.ConsumerLiveness), prints a
// [WAIT] line naming it: a run whose builder, pusher, verifier or
// reporter is down waits for it, and would otherwise wait in silence. A
// busy service, or a run waiting its turn behind others to one tag, gets
// no line. A note is printed again only when what it says changes.
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

	// The latest event a service takes: the step the run is at.
	i := len(names) - 1
	for i > 0 && names[i].Taker() == "" {
		i--
	}
	taker := names[i].Taker()
	if taker == "" {
		return // an event after which nothing is to come
	}
	ctx, cancel := context.WithTimeout(w.ctx, busTimeout)
	defer cancel()
	live, err := bus.ConsumerLiveness(ctx, w.js, taker)

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || w.since != since {
		return // the run went on meanwhile
	}
	if note := waitNote(taker, live, err); note != "" && note != w.said {
		fmt.Fprintf(w.out, "[WAIT] nothing for %s since %s: %s\n", time.Since(since).Round(100*time.Millisecond), names[i], note)
		w.said = note
	}
	w.timer.Reset(w.quiet)
}

// waitNote is why a run waits for the service taker: it never ran on this
// bus, or it is not running; "" when it runs (busy, or the run waits its
// turn) or the bus could not say.
func waitNote(taker string, live bus.Liveness, err error) string {
	switch {
	case err != nil || live == bus.Running:
		return ""
	case live == bus.Absent:
		return fmt.Sprintf("no %s has ever run on this bus: start it (digestline dev runs every service; docs/deployment.md)", taker)
	}
	return fmt.Sprintf("%s not running (no worker asks its consumer for events); the run goes on once it starts", taker)
}
