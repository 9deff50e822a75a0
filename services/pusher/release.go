package pusher

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/tags"
)

// release moves the tag of every image of an approved release, in the
// order the release names them. If a move fails, the tags moved before it
// are put back where the release found them, last first, and the run
// fails naming the image (push.failed with the release's failure); if a
// newer request overtook one, they are put back too and the run is
// superseded. Once every tag has moved, release.moved sends them to be
// verified again.
//
// A redelivery moves again what was put back: the ledger (package tags)
// takes a run's moves of one tag in the order it makes them.
func (p *pusher) release(ctx context.Context, m bus.Message, ra events.ReleaseApproval) error {
	moved := make([]events.PushResult, 0, len(ra.Images))
	for i, a := range ra.Images {
		res, err := p.move(ctx, m, a, fmt.Sprintf("%d/", i))
		if err == nil {
			moved = append(moved, res)
			continue
		}
		if ctx.Err() != nil {
			return err // shutting down: another instance takes the release on
		}
		f := events.ReleaseFailure{Name: ra.Name, Environment: ra.Environment, Image: a.Repository + "@" + a.Digest}
		f.PutBack, f.Left = p.putBack(ctx, m, moved)
		if s := (*tags.SupersededError)(nil); errors.As(err, &s) {
			return p.superseded(ctx, m, s, events.Supersession{Environment: a.Environment, Repository: a.Repository, Digest: a.Digest,
				Step: "promote", Evidence: a.Evidence, Release: ra.Name})
		}
		p.cfg.Log().Warn(fmt.Sprintf("release %s failed at image %d of %d (%s)", ra.Name, i+1, len(ra.Images), f.Image), "run_id", events.RunID(m.Event))
		return p.Bus.Fail(ctx, m, events.PushFailed, err, events.Failure{Target: a.Place() + ":" + a.Tag, Digest: a.Digest, Evidence: a.Evidence, Release: &f})
	}
	_, err := p.Bus.Emit(ctx, m.Event, events.ReleaseMoved, "", events.ReleaseMoves{
		Name: ra.Name, Environment: ra.Environment, Images: moved, RequestedAt: ra.RequestedAt,
	})
	return err
}

// putBack moves the tags of a release's moved images back to the digest
// each held before (the promotion's previous in landing order), last
// first. It returns the images put back, and those left where the
// release moved them, with why: a tag that held nothing before has
// nothing to go back to, and a registry that fails the move back is not
// asked again (a person looks: the failure lists them).
func (p *pusher) putBack(ctx context.Context, m bus.Message, moved []events.PushResult) (back, left []string) {
	for i, res := range slices.Backward(moved) {
		a := *res.Promotion
		ref := a.Repository + "@" + a.Digest
		if a.Previous == "" {
			left = append(left, ref+": "+a.Environment+" held nothing of it before")
			continue
		}
		// The digest it goes back to is in the environment's repository
		// already: nothing is copied.
		b := a
		b.Digest, b.Previous, b.Source = a.Previous, a.Digest, a.Place()
		if _, err := p.move(ctx, m, b, fmt.Sprintf("put-back/%d/", i)); err != nil {
			left = append(left, fmt.Sprintf("%s: the move back to %s failed: %v", ref, a.Previous, err))
			continue
		}
		p.cfg.Log().Warn(fmt.Sprintf("put back %s:%s at %s", a.Place(), a.Tag, a.Previous), "run_id", events.RunID(m.Event))
		back = append(back, a.Repository+"@"+a.Previous)
	}
	return back, left
}
