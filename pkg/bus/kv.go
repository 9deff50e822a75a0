package bus

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// PutRevision writes value under key over revision rev of it (0: a key
// not written yet) and returns the new revision. Raced says another
// writer wrote the key since rev was read, and nothing was written: the
// caller reads it again and decides anew.
func PutRevision(ctx context.Context, kv jetstream.KeyValue, key string, value []byte, rev uint64) (next uint64, raced bool, err error) {
	if rev == 0 {
		next, err = kv.Create(ctx, key, value)
	} else {
		next, err = kv.Update(ctx, key, value, rev)
	}
	var apiErr *jetstream.APIError
	if errors.Is(err, jetstream.ErrKeyExists) || errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		return 0, true, nil
	}
	return next, false, err
}
