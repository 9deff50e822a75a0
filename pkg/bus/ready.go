package bus

import (
	"context"
	"log/slog"
	"time"
)

// StartWait bounds how long a service tries what it does against the bus
// as it starts (binding its buckets, making its consumers): a cluster
// electing the leaders of its streams (a node lost, a rolling restart)
// answers nothing for a few seconds, while a bus that refuses for good
// should stop the service soon, saying why.
const StartWait = time.Minute

// UntilReady calls try until it succeeds, ctx ends (ctx's error), or the
// deadline passes (try's last error; a zero deadline never passes),
// trying again a second later at first and 5 s later at most, with a
// warning naming what each time.
func UntilReady(ctx context.Context, log *slog.Logger, what string, deadline time.Time, try func(context.Context) error) error {
	for wait := time.Second; ; wait = min(2*wait, 5*time.Second) {
		err := try(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !deadline.IsZero() && time.Now().Add(wait).After(deadline) {
			return err
		}
		log.Warn("not ready; retrying", "what", what, "retry_in", wait, "error", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}
