package runs

import (
	"context"
	"errors"
	"fmt"

	"github.com/digestline/digestline/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// FollowMessages reads a run's events from iter, a consumer of the run's
// subjects (ship makes it before it starts the run), in stream order,
// until the run ends: each is called with the event as stored, the run as
// it stands after it, and the lines a person reads for it. A run that
// ends without promotion returns its *Error.
func FollowMessages(iter jetstream.MessagesContext, runID string, each func(raw []byte, run *Run, lines []string)) (*Run, error) {
	run := &Run{}
	for !run.Done() {
		msg, err := iter.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return run, fmt.Errorf("stopped following run %s: %w", runID, context.Canceled)
		}
		if err != nil {
			return run, fmt.Errorf("follow run %s: %w", runID, err)
		}
		ev, name, err := events.ParseMsg(msg.Subject(), msg.Data())
		if err != nil {
			continue // one the services dead-letter (the subjects are this run's)
		}
		lines := run.Add(ev, name)
		each(msg.Data(), run, lines)
	}
	if run.Err != nil {
		return run, run.Err
	}
	return run, nil
}

// ErrNoRun is a run id, or prefix of one, that no run has; ErrAmbiguous a
// prefix several runs' ids have (the reporter resolves prefixes).
var (
	ErrNoRun     = errors.New("no such run")
	ErrAmbiguous = errors.New("ambiguous run id")
)
