package bus

import (
	"context"
	"time"
)

// KeepAlive tells JetStream every interval that the delivery is still being
// worked on (an in-progress ack), so a handler may take longer than the
// consumer's AckWait while a crashed one's event still comes back soon.
func KeepAlive(interval time.Duration) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m Message) error {
			done := make(chan struct{})
			ticked := make(chan struct{})
			go func() {
				defer close(ticked)
				t := time.NewTicker(interval)
				defer t.Stop()
				for {
					select {
					case <-done:
						return
					case <-t.C:
						_ = m.d.msg.InProgress()
					}
				}
			}()
			defer func() { close(done); <-ticked }()
			return next(ctx, m)
		}
	}
}
