package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
)

// Timeout bounds each handler by timeout(event name): past it, the
// handler's context is cancelled with a *failure.DeadlineError as its
// cause (failure.CancelAfter: the bus's own requests keep their short
// timeouts), so
// what it waited for fails as a transport failure naming the bound, and the
// handler reports it as the run's failure (Bus.Fail) instead of holding the
// event forever.
func Timeout(timeout func(events.Name) time.Duration) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m Message) error {
			ctx, cancel := failure.CancelAfter(ctx, &failure.DeadlineError{
				What: fmt.Sprintf("the %s's handling of %s", m.Consumer, m.Name), Timeout: timeout(m.Name), Setting: "DIGESTLINE_HANDLER_TIMEOUT",
			})
			defer cancel()
			return next(ctx, m)
		}
	}
}
