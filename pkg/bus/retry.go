package bus

import (
	"context"
	"log/slog"
	"time"
)

// Retry hands a delivery whose handler failed back for redelivery after
// backoff(delivery) — a failure that may pass, before the last delivery —
// or at once when the service is shutting down.
func Retry(backoff func(delivery uint64) time.Duration, log *slog.Logger) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m Message) error {
			err := next(ctx, m)
			switch {
			case err == nil:
			case shuttingDown(ctx):
				_ = m.settle(OutcomeRetry, m.d.msg.Nak)
			case !IsPermanent(err) && !m.LastTry:
				delay := backoff(m.Delivery)
				log.Warn("handler failed; will retry", "consumer", m.Consumer, "subject", m.Subject,
					"delivery", m.Delivery, "retry_in", delay, "error", err)
				_ = m.settle(OutcomeRetry, func() error { return m.d.msg.NakWithDelay(delay) })
			}
			return err
		}
	}
}
