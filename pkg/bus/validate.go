package bus

import (
	"context"

	"github.com/digestline/digestline/pkg/events"
)

// Validate parses the delivery into its event (Message.Event and Name):
// a valid CloudEvent of the contract, which is the event its subject names.
// An invalid one fails with ErrInvalid, and is never handed on.
func Validate() Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m Message) error {
			ev, name, err := events.ParseMsg(m.d.msg.Subject(), m.d.msg.Data())
			if err != nil {
				return err
			}
			m.Event, m.Name = ev, name
			return next(ctx, m)
		}
	}
}
