package bus

import (
	"context"
	"log/slog"
)

// Acknowledge acks a delivery whose handler succeeded, and hands back at
// once (nak) one that failed and that nothing inside settled.
func Acknowledge(log *slog.Logger) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m Message) error {
			err := next(ctx, m)
			sctx, cancel := settleContext(ctx)
			defer cancel()
			if err == nil {
				if aerr := m.settle(OutcomeAck, func() error { return m.d.msg.DoubleAck(sctx) }); aerr != nil {
					log.Warn("ack failed; the event will be redelivered", "consumer", m.Consumer, "subject", m.Subject, "error", aerr)
				}
				return nil
			}
			_ = m.settle(OutcomeRetry, m.d.msg.Nak)
			return err
		}
	}
}
