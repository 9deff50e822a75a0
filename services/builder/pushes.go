package builder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// pushStarted is what one push of a delivery started: its runs, or why none.
type pushStarted struct {
	commit string // what the push named (push.sha)
	runs   []string
	why    string
}

// pushesTimeout bounds recording a delivery's pushes.
const pushesTimeout = 10 * time.Second

// recordPushes keeps what each push started by the object it named
// (events.PushesBucket), so that following a commit knows its runs, or
// why there are none, instead of waiting for runs that never come.
// Webhooks without a bus (a config's check) keep nothing.
func (h *Webhooks) recordPushes(ctx context.Context, pushes []pushStarted) error {
	if h.bus == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, pushesTimeout)
	defer cancel()
	var kv jetstream.KeyValue
	for _, p := range pushes {
		commit := strings.ToLower(p.commit)
		if !events.IsCommitID(commit) || strings.Trim(commit, "0") == "" { // a deleted ref's
			continue
		}
		if kv == nil {
			var err error
			if kv, err = h.bus.JetStream().KeyValue(ctx, events.PushesBucket); err != nil {
				return fmt.Errorf("open %s (is the bus provisioned?): %w", events.PushesBucket, err)
			}
		}
		if err := addPush(ctx, kv, commit, p); err != nil {
			return fmt.Errorf("record what the push of %s started: %w (the forge's redelivery records it)", commit, err)
		}
	}
	return nil
}

// addPush adds p to the record of commit, read again when another
// delivery wrote it meanwhile.
func addPush(ctx context.Context, kv jetstream.KeyValue, commit string, p pushStarted) error {
	for {
		cur, rev := api.Push{Commit: commit}, uint64(0)
		e, err := kv.Get(ctx, commit)
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return err
		}
		if err == nil {
			if err := json.Unmarshal(e.Value(), &cur); err != nil {
				return fmt.Errorf("%s is corrupt: %w", commit, err)
			}
			rev = e.Revision()
		}
		if !cur.Add(p.runs, p.why, time.Now()) {
			return nil // a redelivery
		}
		b, err := json.Marshal(cur)
		if err != nil {
			return err
		}
		if _, raced, err := bus.PutRevision(ctx, kv, commit, b, rev); !raced {
			return err
		}
	}
}
