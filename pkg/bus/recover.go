package bus

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
)

// Recover turns a handler's panic into a Permanent error, so one bad event
// cannot take the service down.
func Recover(log *slog.Logger) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m Message) (err error) {
			defer func() {
				if r := recover(); r != nil {
					log.Error("handler panicked", "consumer", m.Consumer, "subject", m.Subject, "panic", r, "stack", string(debug.Stack()))
					err = Permanent(fmt.Errorf("handler panicked: %v", r))
				}
			}()
			return next(ctx, m)
		}
	}
}
