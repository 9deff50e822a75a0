package bus

import (
	"context"
	"log/slog"
)

// Acknowledge acks a delivery whose handler succeeded, and hands back at
// once (nak) one that failed and that nothing inside settled.
//
// The ack is not confirmed (an ack whose server answers: DoubleAck): an
// ack lost on the way only has the event delivered again after AckWait,
// to a handler that is idempotent, which a confirmed ack that timed out
// has too. Confirming cost a request and its answer for every event
// handled, 5% of the messages of a run; a service drains its connection
// as it stops, so no ack it made is left unsent.
func Acknowledge(log *slog.Logger) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m Message) error {
			err := next(ctx, m)
			if err == nil {
				if aerr := m.settle(OutcomeAck, m.d.msg.Ack); aerr != nil {
					log.Warn("ack failed; the event will be redelivered", "consumer", m.Consumer, "subject", m.Subject, "error", aerr)
				}
				return nil
			}
			_ = m.settle(OutcomeRetry, m.d.msg.Nak)
			return err
		}
	}
}
