// Package tags orders the pipeline's moves of each tag by when they were
// requested.
//
// Runs that move one tag (say app:dev) while commits land close together
// would otherwise trip over each other: one moves the tag between
// another's look and its move, and the other reports drift although no one
// outside the pipeline touched it. The ledger keeps, per tag, the
// pipeline's last move and the move in progress, in the TagsBucket:
//
//   - one run moves a tag at a time (the move in progress is a lease that
//     another run waits for, and takes over once it has expired: a mover
//     that died);
//   - a tag never moves back: a run whose request is older than the last
//     move's is superseded (a *SupersededError naming the newer run), and
//     the tag stays where the newer request put it;
//   - where the tag points is checked against where the pipeline left it,
//     so a move from outside is still drift.
package tags

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// Request is a run's request to move a tag to a digest, and when it was
// made: the webhook's or the CLI's request time, carried by the run's
// events.
type Request struct {
	RunID       string    `json:"runId"`
	RequestedAt time.Time `json:"requestedAt"`
	Digest      string    `json:"digest"`
	// Promotes says the move is an environment's promotion: what the
	// environment then holds. (A build's push may move the same tag: it
	// is ordered with the promotions, and is not one.)
	Promotes bool `json:"promotes,omitempty"`
}

// Newer reports whether r was requested after o (by time, then by run id,
// so that two requests are never equal).
func (r Request) Newer(o Request) bool {
	if !r.RequestedAt.Equal(o.RequestedAt) {
		return r.RequestedAt.After(o.RequestedAt)
	}
	return r.RunID > o.RunID
}

// Move is a tag move the pipeline made.
type Move struct {
	Request
	From string `json:"from,omitempty"` // where the tag pointed before ("" for nowhere)
	// Held is, for a promotion, the digest the promotion before it moved
	// the tag to ("" for none known): the environment's previous digest,
	// in the order the moves landed.
	Held    string    `json:"held,omitempty"`
	MovedAt time.Time `json:"movedAt"`
}

// lease is a move in progress.
type lease struct {
	Request
	Since time.Time `json:"since"`
}

// entry is what the bucket holds per tag.
type entry struct {
	Last   *Move  `json:"last,omitempty"`
	Moving *lease `json:"moving,omitempty"`
	// Promoted is the digest the last promotion moved the tag to.
	Promoted string `json:"promoted,omitempty"`
	// Promotions are the last promotions that landed (keptPromotions),
	// newest last: a promotion redelivered after newer moves followed its
	// own (its pusher died once the tag had moved, before it said so) is
	// given its move again, and goes on as one that moved the tag in its
	// turn. Superseded instead, it left its digest as the next
	// promotion's Held, and the history's chain broken.
	Promotions []Move `json:"promotions,omitempty"`
	// Queue holds the requests that must each move the tag in turn
	// (queue.go), until they have.
	Queue []lease `json:"queue,omitempty"`
}

// moved is the entry once done has landed: no move in progress, and
// done's request out of the queue.
func (e entry) moved(done Move) entry {
	next := e
	next.Last, next.Moving, next.Queue = &done, nil, without(e.Queue, done.RunID)
	if done.Promotes {
		next.Promoted = done.Digest
		next.Promotions = append(e.Promotions[max(len(e.Promotions)+1-keptPromotions, 0):len(e.Promotions):len(e.Promotions)], done)
	}
	return next
}

// keptPromotions is how many landed promotions an entry keeps: more than
// can land on one tag while a dead pusher's event waits for its
// redelivery (the ack wait).
const keptPromotions = 16

// landed is req's promotion when it landed already, newer moves or not.
func (e entry) landed(req Request) (Move, bool) {
	for _, m := range e.Promotions {
		if req.Promotes && m.RunID == req.RunID && m.Digest == req.Digest {
			return m, true
		}
	}
	return Move{}, false
}

// SupersededError is a move refused because a newer request moved the tag
// already: the run is overtaken, not failed.
type SupersededError struct {
	Tag string
	By  Request // the newer request
}

func (e *SupersededError) Error() string {
	return fmt.Sprintf("tag %s was moved to %s by run %s, requested later (%s)",
		e.Tag, e.By.Digest, e.By.RunID, e.By.RequestedAt.Format(time.RFC3339Nano))
}

// Overtaken is the line a stage that did not move the tag reports.
func (e *SupersededError) Overtaken() string {
	return fmt.Sprintf("superseded by run %s, requested later, which moved the tag to %s", e.By.RunID, e.By.Digest)
}

// DefaultLease is how long a move in progress keeps other runs waiting
// before they take it over: longer than any tag update (one manifest PUT
// and a look at the tag, each bounded by the registry's timeouts).
const DefaultLease = time.Minute

// Ledger is the pipeline's moves of every tag.
type Ledger struct {
	kv    jetstream.KeyValue
	lease time.Duration
	now   func() time.Time
}

// Open opens the ledger in the provisioned TagsBucket.
func Open(ctx context.Context, js jetstream.JetStream) (*Ledger, error) {
	kv, err := js.KeyValue(ctx, events.TagsBucket)
	if err != nil {
		return nil, fmt.Errorf("open the tag ledger %s (is the bus provisioned?): %w", events.TagsBucket, err)
	}
	return &Ledger{kv: kv, lease: DefaultLease, now: time.Now}, nil
}

// WithLease returns the ledger with another lease (tests take over a dead
// mover's lease sooner).
func (l *Ledger) WithLease(d time.Duration) *Ledger {
	c := *l
	c.lease = d
	return &c
}

// key is tag's key: its full name (registry/repository:tag) in base64url,
// which only has characters a key may hold.
func key(tag string) string { return "t." + base64.RawURLEncoding.EncodeToString([]byte(tag)) }

// Last is the pipeline's last move of tag, nil when it never moved it.
func (l *Ledger) Last(ctx context.Context, tag string) (*Move, error) {
	e, _, err := l.get(ctx, tag)
	return e.Last, err
}

// MovedTo reports whether the pipeline's last move of tag, or its move
// in progress, is to digest: a registry's notification of that push is of
// the pipeline's own move, not of an image pushed by someone else.
func (l *Ledger) MovedTo(ctx context.Context, tag, digest string) (bool, error) {
	e, _, err := l.get(ctx, tag)
	if err != nil {
		return false, err
	}
	return e.Last != nil && e.Last.Digest == digest || e.Moving != nil && e.Moving.Digest == digest, nil
}

// MoveFunc moves the tag. known is where the pipeline left it (its last
// move, and a dead mover's digest when its lease was taken over); nil when
// the pipeline never moved it. It returns where the tag pointed before.
type MoveFunc func(ctx context.Context, known []string) (from string, err error)

// Move moves tag for req with move, once every move in progress is done,
// and records it. It returns the move; a *SupersededError when a request
// newer than req moved the tag already (move is not called); or move's
// error. A request moved already (a redelivery) returns its move again.
func (l *Ledger) Move(ctx context.Context, tag string, req Request, move MoveFunc) (Move, error) {
	req.RequestedAt = req.RequestedAt.UTC().Round(0) // as the bucket keeps it
	wait := 20 * time.Millisecond
	for {
		e, rev, err := l.get(ctx, tag)
		if err != nil {
			return Move{}, err
		}
		if last := e.Last; last != nil {
			if last.RunID == req.RunID && last.Digest == req.Digest {
				if last.Promotes || !req.Promotes {
					return *last, nil // a redelivery
				}
				done, err := l.promoteOwn(ctx, tag, e, rev)
				if errors.Is(err, errRaced) {
					continue
				}
				return done, err
			}
			if m, ok := e.landed(req); ok {
				return m, nil // a redelivery, after newer moves
			}
			if last.Newer(req) {
				return Move{}, &SupersededError{Tag: tag, By: last.Request}
			}
		}
		if m := e.Moving; m != nil && m.RunID != req.RunID && l.now().Sub(m.Since) < l.lease {
			// Another run is moving the tag: wait for it, then look again.
			if err := sleep(ctx, wait); err != nil {
				return Move{}, fmt.Errorf("waiting %s for run %s to move tag %s: %w", l.lease, m.RunID, tag, err)
			}
			wait = min(2*wait, 500*time.Millisecond)
			continue
		}
		if q := l.ahead(e, req); q != nil {
			// The tag's environment takes every digest in turn: wait for
			// the older request's move, or its end.
			if err := sleep(ctx, wait); err != nil {
				return Move{}, fmt.Errorf("waiting for run %s, requested before, to move tag %s first (or end): %w", q.RunID, tag, err)
			}
			wait = min(2*wait, 500*time.Millisecond)
			continue
		}
		var known []string
		if e.Last != nil {
			known = append(known, e.Last.Digest)
		}
		if e.Moving != nil { // a mover that died (or this run, redelivered): its move may have landed
			known = append(known, e.Moving.Digest)
		}
		claim := e
		claim.Moving = &lease{Request: req, Since: l.now()}
		claimed, err := l.put(ctx, tag, claim, rev)
		if errors.Is(err, errRaced) {
			continue
		}
		if err != nil {
			return Move{}, err
		}
		from, err := move(ctx, known)
		if err != nil {
			// Let the next run go at once; if this fails too, the lease
			// runs out.
			if rerr := l.finish(context.WithoutCancel(ctx), tag, req, claim, claimed, nil); rerr != nil {
				err = errors.Join(err, rerr)
			}
			return Move{}, err
		}
		done := Move{Request: req, From: from, MovedAt: l.now().UTC()}
		if err := l.finish(ctx, tag, req, claim, claimed, &done); err != nil {
			return Move{}, fmt.Errorf("record the move of tag %s (the tag moved; a retry records it): %w", tag, err)
		}
		return done, nil
	}
}

// promoteOwn records a promotion whose run's build moved the tag already
// (a ship to the environment's own tag): that move is the promotion.
// Another run's move in progress stays so.
func (l *Ledger) promoteOwn(ctx context.Context, tag string, e entry, rev uint64) (Move, error) {
	done := *e.Last
	done.Promotes, done.Held = true, e.Promoted
	next := e.moved(done)
	next.Moving = e.Moving
	if _, err := l.put(ctx, tag, next, rev); err != nil {
		return Move{}, err
	}
	return done, nil
}

// finish ends req's move in progress: done landed (nil: it did not).
// Another run may have written the entry meanwhile (a promotion of its
// build's move): it is read again, and written while the move in
// progress is still req's.
func (l *Ledger) finish(ctx context.Context, tag string, req Request, e entry, rev uint64, done *Move) error {
	for {
		next := e
		next.Moving = nil
		if done != nil {
			if req.Promotes {
				done.Held = e.Promoted
			}
			next = e.moved(*done)
		}
		_, err := l.put(ctx, tag, next, rev)
		if !errors.Is(err, errRaced) {
			return err
		}
		if e, rev, err = l.get(ctx, tag); err != nil {
			return err
		}
		if e.Moving == nil || e.Moving.RunID != req.RunID {
			return fmt.Errorf("run %s's move of tag %s was taken over: it outlasted its lease of %s", req.RunID, tag, l.lease)
		}
	}
}

// errRaced is a write that lost to another: the caller reads again.
var errRaced = errors.New("the tag's entry changed")

func (l *Ledger) get(ctx context.Context, tag string) (entry, uint64, error) {
	var e entry
	kve, err := l.kv.Get(ctx, key(tag))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return e, 0, nil
	}
	if err != nil {
		return e, 0, fmt.Errorf("read tag %s's moves: %w", tag, err)
	}
	if err := json.Unmarshal(kve.Value(), &e); err != nil {
		return e, 0, fmt.Errorf("tag %s's moves are not readable (delete key %s of %s to start it over): %w", tag, key(tag), events.TagsBucket, err)
	}
	return e, kve.Revision(), nil
}

// put writes e over revision rev (0: the key is new), or errRaced.
func (l *Ledger) put(ctx context.Context, tag string, e entry, rev uint64) (uint64, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return 0, err
	}
	rev, raced, err := bus.PutRevision(ctx, l.kv, key(tag), b, rev)
	if raced {
		return 0, errRaced
	}
	if err != nil {
		return 0, fmt.Errorf("write tag %s's moves: %w", tag, err)
	}
	return rev, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// Mover is the run whose move put tag where look finds it (its last
// move, or the move in progress), nil when no run of the pipeline did:
// someone outside put it there. It returns where look found the tag. A tag
// that moves on while it is explained is looked at again: the ledger
// forgets a move once the next has landed.
func (l *Ledger) Mover(ctx context.Context, tag string, look func(context.Context) (string, error)) (string, *Request, error) {
	found, err := look(ctx)
	for range 5 {
		if err != nil || found == "" {
			return found, nil, err
		}
		// The ledger is read after the look: a run claims its move here
		// before it makes it.
		e, _, err := l.get(ctx, tag)
		if err != nil {
			return found, nil, err
		}
		for _, r := range []*Request{moveRequest(e.Last), leaseRequest(e.Moving)} {
			if r != nil && r.Digest == found {
				return found, r, nil
			}
		}
		again, err := look(ctx)
		if err == nil && again == found {
			return found, nil, nil
		}
		found = again
	}
	return found, nil, err
}

func moveRequest(m *Move) *Request {
	if m == nil {
		return nil
	}
	return &m.Request
}

func leaseRequest(m *lease) *Request {
	if m == nil {
		return nil
	}
	return &m.Request
}
