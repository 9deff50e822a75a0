package bus

import (
	"context"
	"time"
)

// Each middleware is a func(Handler) Handler that does one thing, in a
// file of its own; Router.chain puts them in order around every handler.

// settleTimeout bounds an ack, a nak or a dead-letter: they run on a
// context of their own, as the handler's may have run out.
const settleTimeout = 5 * time.Second

// settleContext is ctx's values (the span) without its end, bounded.
func settleContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
}
