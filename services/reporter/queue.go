package reporter

import (
	"cmp"
	"context"

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
