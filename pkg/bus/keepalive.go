package bus

import (
	"context"
	"sync"
	"time"
)

// KeepAlive tells JetStream every interval that the delivery is still being
// worked on (an in-progress ack), so a handler may take longer than the
// consumer's AckWait while a crashed one's event still comes back soon.
func KeepAlive(interval time.Duration) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m Message) error {
			// A timer, not a goroutine of its own: most handlers end
			// long before the first tick. Once the handler returns no
			// tick sends anything, and none is scheduled again.
			var mu sync.Mutex
			done := false
			var t *time.Timer
			mu.Lock() // the first tick waits for t
			t = time.AfterFunc(interval, func() {
				mu.Lock()
				defer mu.Unlock()
				if !done {
					_ = m.d.msg.InProgress()
					t.Reset(interval)
				}
			})
			mu.Unlock()
			defer func() {
				mu.Lock()
				defer mu.Unlock()
				done = true
				t.Stop()
			}()
			return next(ctx, m)
		}
	}
}
