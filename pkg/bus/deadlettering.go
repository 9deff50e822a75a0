package bus

import (
	"context"
	"fmt"
)

// DeadLettering stores an event that will never be handled in the dead-letter
// stream, with why, and terminates it: one whose handler failed for good
// (Permanent, ErrInvalid) or on its last delivery, and one delivered more
// often than maxDeliver (its handler crashed or timed out each time), which
// is not handed to the handler again. A failure because the service is
// shutting down is not the event's: it is left to be handed back.
func DeadLettering(b *Bus, maxDeliver int) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m Message) error {
			err := error(nil)
			if m.Delivery > uint64(maxDeliver) {
				err = Permanent(fmt.Errorf("gave up after %d deliveries (the handler crashed or timed out each time)", m.Delivery-1))
			} else {
				err = next(ctx, m)
			}
			if err == nil || shuttingDown(ctx) || !(IsPermanent(err) || m.LastTry) {
				return err
			}
			sctx, cancel := settleContext(ctx)
			defer cancel()
			if derr := m.settle(OutcomeDeadLetter, func() error { return b.deadLetter(sctx, m, err.Error()) }); derr != nil {
				b.log.Error("dead-letter failed; the event will be redelivered", "consumer", m.Consumer, "error", derr)
				_ = m.d.msg.Nak()
			}
			return err
		}
	}
}
