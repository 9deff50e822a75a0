package reporter

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/index"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/nats-io/nats.go/jetstream"
)

// A run is named by any prefix of its id that no other run's has, as git
// names a commit, from idPrefix characters on. Each run is filed, as it
// starts, in the list of the runs whose ids start as its does (idList):
// a prefix is resolved by reading that list, a few entries at any history,
// not every run's id.
const idPrefix = 4

// idList is the list of the runs whose ids start with id's first idPrefix
// characters (all of id when it is shorter).
func idList(id string) string { return index.List("runs", "id", id[:min(len(id), idPrefix)]) }

// resolve is the whole id of the one run whose id starts with prefix: none
// is runs.ErrNoRun, several runs.ErrAmbiguous (naming up to five), a
// prefix shorter than idPrefix errBadQuery.
func (ri *runIndexer) resolve(ctx context.Context, prefix string) (string, error) {
	if err := events.CheckRunID(prefix); err != nil {
		return "", fmt.Errorf("%w: %v", errBadQuery, err)
	}
	if len(prefix) < idPrefix {
		return "", fmt.Errorf("%w: run id %q is too short: give its first %d characters or more", errBadQuery, prefix, idPrefix)
	}
	var found []string
	keep := func(e index.Entry) (bool, bool) {
		id := string(e.Data)
		if strings.HasPrefix(id, prefix) && !slices.Contains(found, id) {
			found = append(found, id)
		}
		return false, len(found) < 5
	}
	for q := (index.Query{Limit: 1, Scan: 256, Keep: keep}); ; {
		p, err := ri.index.Read(ctx, idList(prefix), q)
		if err != nil {
			return "", fmt.Errorf("find run %s: %w", prefix, err)
		}
		if p.Next == 0 || len(found) >= 5 {
			break
		}
		q.From = p.Next
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%w: no run id starts with %s", runs.ErrNoRun, prefix)
	case 1:
		return found[0], nil
	}
	slices.Sort(found)
	return "", fmt.Errorf("%w: %s starts %s (give more of it)", runs.ErrAmbiguous, prefix, strings.Join(found, ", "))
}

// fileRunIDs files in their id lists the runs that started before a
// version that kept them (the upgrade "run-ids"): every run whose start
// the events stream still holds, read from its subjects at once. Runs the
// stream no longer holds could not be named by a prefix before either.
func (ri *runIndexer) fileRunIDs(ctx context.Context, s *store) error {
	if done, err := s.upgraded(ctx, "run-ids"); err != nil || done {
		return err
	}
	stream, err := ri.js.Stream(ctx, events.StreamName)
	if err != nil {
		return fmt.Errorf("file the runs' ids: %w", err)
	}
	now := time.Now()
	for _, n := range runStarts {
		info, err := stream.Info(ctx, jetstream.WithSubjectFilter(n.Filter()))
		if err != nil {
			return fmt.Errorf("file the runs' ids: %w", err)
		}
		for subject := range info.State.Subjects {
			id := strings.TrimPrefix(subject, n.Subject(""))
			if err := ri.index.Append(ctx, id, now, []byte(id), idList(id)); err != nil {
				return fmt.Errorf("file the runs' ids: %w", err)
			}
		}
	}
	return s.markUpgraded(ctx, "run-ids")
}
