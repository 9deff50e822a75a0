package runs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/digestline/digestline/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// FollowMessages reads a run's events from iter, a consumer of the run's
// subjects (ship makes it before it starts the run), in stream order,
// until the run ends: each is called with the event as stored and the
// lines a person reads for it. A run that ends without promotion returns
// its *Error.
func FollowMessages(iter jetstream.MessagesContext, runID string, each func(raw []byte, lines []string)) (*Run, error) {
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
		each(msg.Data(), run.Add(ev, name))
	}
	if run.Err != nil {
		return run, run.Err
	}
	return run, nil
}

// ErrNoRun is a run id, or prefix of one, that no run has; ErrAmbiguous a
// prefix several runs' ids have.
var (
	ErrNoRun     = errors.New("no such run")
	ErrAmbiguous = errors.New("ambiguous run id")
)

// Resolve finds the run whose id starts with prefix: the id itself when a
// run has it, else the one run whose id has it as a prefix (as git takes
// a commit's short id). Runs start with one of events.RunStarts, so the
// ids are read from those subjects' list.
func Resolve(ctx context.Context, js jetstream.JetStream, prefix string) (string, error) {
	if err := events.CheckRunID(prefix); err != nil {
		return "", err
	}
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return "", fmt.Errorf("open %s (is the bus provisioned?): %w", events.StreamName, err)
	}
	var found []string
	for _, n := range events.RunStarts {
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(n.Subject(prefix)))
		if err != nil {
			return "", fmt.Errorf("find run %s: %w", prefix, err)
		}
		if len(info.State.Subjects) > 0 {
			return prefix, nil // the whole id
		}
		if info, err = s.Info(ctx, jetstream.WithSubjectFilter(n.Filter())); err != nil {
			return "", fmt.Errorf("find run %s: %w", prefix, err)
		}
		for subject := range info.State.Subjects {
			if id := strings.TrimPrefix(subject, n.Subject("")); strings.HasPrefix(id, prefix) && !slices.Contains(found, id) {
				found = append(found, id)
			}
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%w: no run id starts with %s", ErrNoRun, prefix)
	case 1:
		return found[0], nil
	}
	slices.Sort(found)
	return "", fmt.Errorf("%w: %s starts %s (give more of it)", ErrAmbiguous, prefix, strings.Join(found[:min(len(found), 5)], ", "))
}
