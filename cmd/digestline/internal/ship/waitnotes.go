package ship

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/nats-io/nats.go/jetstream"
)

// waitNotes says why a run is quiet. Each time it has had no event for
// quiet, it asks the bus whether the service the run waits for
// (runs.Run.WaitsFor: the pusher while it reports the stages of a push)
// is running (bus.ConsumerLiveness) and, when it is not, prints a [WAIT]
// line naming it: a run whose builder, pusher, verifier or reporter is
// down waits for it, and would otherwise wait in silence. A busy service,
// or a run waiting its turn behind others to one tag, gets no line. A
// note is printed again only when what it says changes.
type waitNotes struct {
	js     jetstream.JetStream
	out    io.Writer // safe for the timer's goroutine (progress.View)
	quiet  time.Duration
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // a check in flight

	mu       sync.Mutex
	timer    *time.Timer
	waitsFor string    // the service
	since    time.Time // the run's latest event
	said     string
	stopped  bool
}

// startWaitNotes starts watching a run that has just been requested.
func startWaitNotes(ctx context.Context, js jetstream.JetStream, out io.Writer, quiet time.Duration) *waitNotes {
	w := &waitNotes{js: js, out: out, quiet: quiet, waitsFor: events.BuildRequested.Taker(), since: time.Now()}
	w.ctx, w.cancel = context.WithCancel(ctx)
	w.timer = time.AfterFunc(quiet, w.check)
	return w
}

// event notes the run's latest event and the service it now waits for:
// the quiet starts again.
func (w *waitNotes) event(waitsFor string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.waitsFor, w.since, w.said = waitsFor, time.Now(), ""
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
// when that service is not running, and looks again after quiet.
func (w *waitNotes) check() {
	w.mu.Lock()
	if w.stopped || w.waitsFor == "" {
		w.mu.Unlock()
		return
	}
	w.wg.Add(1)
	defer w.wg.Done()
	service, since := w.waitsFor, w.since
	w.mu.Unlock()

	ctx, cancel := context.WithTimeout(w.ctx, busTimeout)
	defer cancel()
	live, err := bus.ConsumerLiveness(ctx, w.js, service)

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || w.since != since {
		return // the run went on meanwhile
	}
	if note := live.Note(service); err == nil && note != "" && note != w.said {
		fmt.Fprintln(w.out, runs.WaitLine(time.Since(since), note))
		w.said = note
	}
	w.timer.Reset(w.quiet)
}
