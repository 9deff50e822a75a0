package reporter

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"

	"github.com/digestline/digestline/pkg/events"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/nats-io/nats.go/jetstream"
)

// store keeps promotion records and the run index in JetStream KV.
type store struct {
	promotions jetstream.KeyValue
	runs       jetstream.KeyValue
}

func openStore(ctx context.Context, js jetstream.JetStream) (*store, error) {
	promotions, err := js.KeyValue(ctx, events.PromotionsBucket)
	if err != nil {
		return nil, fmt.Errorf("open %s (is the bus provisioned?): %w", events.PromotionsBucket, err)
	}
	runs, err := js.KeyValue(ctx, events.RunsBucket)
	if err != nil {
		return nil, fmt.Errorf("open %s (is the bus provisioned?): %w", events.RunsBucket, err)
	}
	return &store{promotions: promotions, runs: runs}, nil
}

// promotionKey is <env>.<repository, base64url>: repositories hold ':' and
// '[' that KV keys may not.
func promotionKey(env, repo string) string {
	return env + "." + base64.RawURLEncoding.EncodeToString([]byte(repo))
}

// record makes rec the current promotion of its environment and repository
// and returns what was stored. If the current record is already this run's
// promotion of this digest, it is returned unchanged (idempotent). Concurrent
// writers are serialized by the KV revision.
func (s *store) record(ctx context.Context, rec events.Promotion) (events.Promotion, error) {
	key := promotionKey(rec.Environment, rec.Repository)
	entry, err := s.promotions.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		entry = nil
	case err != nil:
		return rec, fmt.Errorf("read promotion %s/%s: %w", rec.Environment, rec.Repository, err)
	}
	if entry != nil {
		var cur events.Promotion
		if err := json.Unmarshal(entry.Value(), &cur); err != nil {
			return rec, fmt.Errorf("promotion %s/%s is corrupt: %w", rec.Environment, rec.Repository, err)
		}
		if cur.RunID == rec.RunID && cur.Digest == rec.Digest {
			return cur, nil
		}
		if cur.Digest != rec.Digest {
			rec.PreviousDigest = cur.Digest
		} else {
			rec.PreviousDigest = cur.PreviousDigest
		}
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return rec, err
	}
	if entry == nil {
		_, err = s.promotions.Create(ctx, key, b)
	} else {
		_, err = s.promotions.Update(ctx, key, b, entry.Revision())
	}
	if err != nil {
		return rec, fmt.Errorf("write promotion %s/%s (a concurrent writer is retried): %w", rec.Environment, rec.Repository, err)
	}
	return rec, nil
}

// promotions lists every current record, by environment then repository.
func (s *store) list(ctx context.Context) ([]events.Promotion, error) {
	lister, err := s.promotions.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := []events.Promotion{}
	for key := range lister.Keys() {
		entry, err := s.promotions.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted since listed
		}
		if err != nil {
			return nil, err
		}
		var rec events.Promotion
		if err := json.Unmarshal(entry.Value(), &rec); err != nil {
			return nil, fmt.Errorf("promotion %s is corrupt: %w", key, err)
		}
		out = append(out, rec)
	}
	slices.SortFunc(out, func(a, b events.Promotion) int {
		return cmp.Or(cmp.Compare(a.Environment, b.Environment), cmp.Compare(a.Repository, b.Repository))
	})
	return out, nil
}

// runIDPattern is what a run id may be to serve as a KV key token.
var runIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// indexEvent stores the event under <run id>.<stream sequence>: the key is
// fixed by the delivery, so a redelivery rewrites the same entry.
func (s *store) indexEvent(ctx context.Context, m events.Message) error {
	run := events.RunID(m.Event)
	if !runIDPattern.MatchString(run) {
		return events.Permanent(fmt.Errorf("run id %q cannot be indexed: want %s", run, runIDPattern))
	}
	b, err := json.Marshal(m.Event)
	if err != nil {
		return events.Permanent(err)
	}
	_, err = s.runs.Put(ctx, fmt.Sprintf("%s.%020d", run, m.Sequence), b)
	return err
}

// run returns a run's events in stream order.
func (s *store) run(ctx context.Context, run string) ([]json.RawMessage, error) {
	if !runIDPattern.MatchString(run) {
		return nil, fmt.Errorf("run id %q: want %s", run, runIDPattern)
	}
	lister, err := s.runs.ListKeysFiltered(ctx, run+".>")
	if err != nil {
		return nil, err
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	slices.Sort(keys) // zero-padded sequences sort in stream order
	out := make([]json.RawMessage, 0, len(keys))
	for _, k := range keys {
		entry, err := s.runs.Get(ctx, k)
		if err != nil {
			return nil, err
		}
		out = append(out, entry.Value())
	}
	return out, nil
}

// splitTarget returns a target's repository and tag ("" when by digest).
func splitTarget(target string) (repo, tag string, err error) {
	ref, err := name.ParseReference(target)
	if err != nil {
		return "", "", err
	}
	if t, ok := ref.(name.Tag); ok {
		tag = t.TagStr()
	}
	return ref.Context().Name(), tag, nil
}
