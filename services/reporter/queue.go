package reporter

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/tags"
)

// queueRun files a run that starts in the queue of its environment's tag,
// when the environment's policy takes every digest in turn (promotions:
// queue): its promotion then moves the tag after every run requested
// before it, and is never superseded (package tags). The run-index
// consumer calls it, one start at a time, as the run starts.
func (r *reporter) queueRun(ctx context.Context, m bus.Message) error {
	if !r.cfg.Policy.Queueing() {
		return nil
	}
	var env, repo string
	switch m.Name {
	case events.BuildRequested:
		req, err := events.Decode[events.BuildRequest](m.Event)
		if err != nil {
			return nil // its builder refuses it
		}
		env, repo = cmp.Or(req.PromoteTo, r.cfg.Environments[0]), runRepository(req.Target)
	case events.AdmissionRequested:
		req, err := events.Decode[events.AdmissionRequest](m.Event)
		if err != nil {
			return nil // its verifier refuses it
		}
		env, repo = cmp.Or(req.PromoteTo, r.cfg.Environments[0]), runRepository(req.Target)
	case events.PromotionRequested:
		req, err := events.Decode[events.PromotionRequest](m.Event)
		if err != nil {
			return nil
		}
		env, repo = req.To, req.Repository
	}
	if repo == "" || !r.cfg.Policy.Queues(env) {
		return nil
	}
	place, tag, err := r.placeOf(env, repo)
	if err != nil {
		return nil // the environment gate refuses it
	}
	return r.Tags.Enqueue(ctx, place.Name()+":"+tag, tags.Request{RunID: events.RunID(m.Event), RequestedAt: m.Event.Time().UTC()})
}

// unqueueRun takes a run that ended out of its queue: one that ended
// without moving the tag (failed, rejected) holds no one up.
func (r *reporter) unqueueRun(ctx context.Context, m bus.Message) error {
	if !r.cfg.Policy.Queueing() {
		return nil
	}
	return r.Tags.Dequeue(ctx, events.RunID(m.Event))
}

// awaitQueued waits, in an environment that takes every digest, until the
// run-index consumer has filed the run in its tag's queue (it files every
// start in stream order): then every run requested before it is filed
// too, and its move waits for theirs. Without the wait a run's move could
// come before an older run was filed, and supersede it. The wait is
// bounded: a run never filed is decided all the same.
func (r *reporter) awaitQueued(ctx context.Context, env, runID string) error {
	if !r.cfg.Policy.Queues(env) || r.Tags == nil {
		return nil
	}
	wait := 10 * time.Millisecond
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); wait = min(2*wait, 500*time.Millisecond) {
		queued, err := r.Tags.Queued(ctx, runID)
		if err != nil || queued {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
	r.cfg.Log().Warn(fmt.Sprintf("run %s was not filed in %s's queue within 30 s: decided without waiting for the runs requested before it", runID, env), "run_id", runID)
	return nil
}
