package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// pull is a router's pull from its durable consumer, kept going while the
// router runs: an iterator that closes though the router did not stop it
// (its consumer deleted, or lost with a server of a cluster; the server
// ending its subscription) is made again, with the consumer. Without that
// the router returned as if stopped, and its service ran on consuming
// nothing: a run stalled with its next event pending and no pull waiting
// for it.
type pull struct {
	r    *Router
	mu   sync.Mutex
	iter jetstream.MessagesContext
	done bool // the router stopped: the iterator is drained
	stop func() bool
}

// errStopped is next's answer once the router has stopped and what was
// pulled before is handed out.
var errStopped = errors.New("the router stopped")

// startPull makes the consumer and starts pulling from it, trying again
// for up to StartWait. When ctx ends it stops pulling: the messages pulled
// already still come out of next (Run hands them back), then next says
// errStopped.
func (r *Router) startPull(ctx context.Context) (*pull, error) {
	p := &pull{r: r}
	if err := p.reopen(ctx, time.Now().Add(StartWait)); err != nil {
		if errors.Is(err, errStopped) {
			return nil, err
		}
		return nil, fmt.Errorf("%w (tried for %s: is NATS reachable, with JetStream, and the bus provisioned?)", err, StartWait)
	}
	p.stop = context.AfterFunc(ctx, p.drain)
	return p, nil
}

// reopen opens the pull (UntilReady) until it opens, ctx ends
// (errStopped), or the deadline, when there is one, passes (the last
// error).
func (p *pull) reopen(ctx context.Context, deadline time.Time) error {
	err := UntilReady(ctx, p.r.bus.log, "consumer "+p.r.spec.Durable, deadline, p.open)
	if ctx.Err() != nil {
		return errStopped
	}
	return err
}

// open makes (or updates) the consumer and a new iterator over it.
func (p *pull) open(ctx context.Context) error {
	spec := p.r.spec
	cons, err := p.r.bus.js.CreateOrUpdateConsumer(ctx, events.StreamName, p.r.consumerConfig())
	if err != nil {
		return fmt.Errorf("consumer %s: %w", spec.Durable, err)
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(2 * spec.Concurrency))
	if err != nil {
		return fmt.Errorf("consumer %s: %w", spec.Durable, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		iter.Drain() // the router stopped meanwhile
	}
	p.iter = iter
	return nil
}

func (p *pull) drain() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = true
	p.iter.Drain()
}

// close stops pulling, whatever was pulled.
func (p *pull) close() {
	p.stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.iter.Stop()
}

// next is the consumer's next message. An iterator that closed unasked is
// made again (tries a second apart at first, 5 s at most), until ctx ends;
// a connection closed for good is the router's error.
func (p *pull) next(ctx context.Context) (jetstream.Msg, error) {
	log, durable := p.r.bus.log, p.r.spec.Durable
	for {
		p.mu.Lock()
		iter := p.iter
		p.mu.Unlock()
		msg, err := iter.Next()
		switch {
		case err == nil:
			return msg, nil
		case !errors.Is(err, jetstream.ErrMsgIteratorClosed):
			log.Warn("consumer pull failed; retrying", "consumer", durable, "error", err)
			continue
		case ctx.Err() != nil:
			return nil, errStopped
		case errors.Is(err, nats.ErrConnectionClosed):
			return nil, fmt.Errorf("consumer %s: %w", durable, err)
		}
		log.Warn("consumer stopped delivering though the service runs (deleted, or lost with a server): making it again", "consumer", durable)
		if err := p.reopen(ctx, time.Time{}); err != nil {
			return nil, err
		}
	}
}
