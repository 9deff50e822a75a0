package reporter

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/index"
	"github.com/nats-io/nats.go/jetstream"
)

// The history's lists in the index, newest first: every entry is on
// historyAll, its environment's, its repository's, both's, and the list of
// each digest it is about (the one promoted or rejected, and the one a
// promotion moved the environment off).
var historyAll = index.List("history", "all")

func historyLists(env, repo string, e api.HistoryEntry) []string {
	env = envToken(env)
	lists := []string{historyAll}
	if env != "" { // a deletion is the repository's, of no one environment
		lists = append(lists, index.List("history", "env", env))
	}
	if repo != "" { // a freeze is the environment's, of no one repository
		repo = repoToken(repo)
		lists = append(lists, index.List("history", "repo", repo))
		if env != "" {
			lists = append(lists, index.List("history", "at", env, repo))
		}
	}
	for _, d := range entryDigests(e) {
		lists = append(lists, digestList(d))
	}
	return lists
}

func digestList(d string) string {
	_, hex, _ := strings.Cut(d, ":")
	return index.List("history", "digest", hex)
}

// entryDigests are the digests an entry is about.
func entryDigests(e api.HistoryEntry) []string {
	var ds []string
	switch {
	case e.Promotion != nil && e.Promotion.Release != nil && e.Promotion.Digest == "": // a release: its images'
		for _, im := range e.Promotion.Release.Images {
			ds = append(ds, im.Digest)
		}
	case e.Promotion != nil:
		ds = append(ds, e.Promotion.Digest)
		if prev := e.Promotion.PreviousDigest; prev != "" && prev != e.Promotion.Digest {
			ds = append(ds, prev)
		}
	case e.Failure != nil:
		ds = append(ds, e.Failure.Digest)
	case e.Deletion != nil:
		ds = append(ds, e.Deletion.Digest)
	case e.Rejection != nil:
		ds = append(ds, e.Rejection.Digest)
	case e.Pin != nil:
		ds = append(ds, e.Pin.Digest)
	case e.Deployment != nil:
		ds = append(ds, e.Deployment.Digest)
	}
	return ds
}

// historyKey is h.<env>.<repo>.<event id>, with "-" (no repository's
// token: those are two characters or more) for an entry of the whole
// environment, and "=" (no environment's token) for an entry of no
// environment (a deletion).
func historyKey(env, repo, eventID string) string {
	envTok, token := cmp.Or(envToken(env), "="), "-"
	if repo != "" {
		token = repoToken(repo)
	}
	return "h." + envTok + "." + token + "." + eventID
}

// addHistory files an entry under its environment and repository, once:
// a redelivery, or a dead letter replayed long after, finds it filed (the
// key is the event's id) and adds nothing. The lists come first, so an
// entry in the bucket is in every list; a crash between the two is
// retried by the redelivery, and the index adds an entry once.
func (s *store) addHistory(ctx context.Context, env, repo string, e api.HistoryEntry) error {
	key := historyKey(env, repo, e.EventID)
	if _, err := s.history.Get(ctx, key); err == nil {
		return nil
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("record history: %w", err)
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := s.index.Append(ctx, e.EventID, e.At, b, historyLists(env, repo, e)...); err != nil {
		return fmt.Errorf("record history: %w", err)
	}
	if _, err := s.history.Put(ctx, key, b); err != nil {
		return fmt.Errorf("record history: %w", err)
	}
	return nil
}

// errBadQuery is a query the history cannot answer: the client's mistake.
var errBadQuery = errors.New("bad query")

// historyPage reads a page of the history, newest first: from the
// narrowest list the query names, keeping the entries every filter
// matches. It reads a bounded number of entries, however long the
// history.
func (s *store) historyPage(ctx context.Context, q api.HistoryQuery) (api.Page[api.HistoryEntry], error) {
	list := historyAll
	switch {
	case q.Digest != "":
		list = digestList(q.Digest)
	case q.Env != "" && q.Repo != "":
		list = index.List("history", "at", envToken(q.Env), repoToken(q.Repo))
	case q.Env != "":
		list = index.List("history", "env", envToken(q.Env))
	case q.Repo != "":
		list = index.List("history", "repo", repoToken(q.Repo))
	}
	from, err := decodeCursor(q.Cursor)
	if err != nil {
		return api.Page[api.HistoryEntry]{}, err
	}
	out := api.Page[api.HistoryEntry]{Items: []api.HistoryEntry{}}
	var bad error
	p, err := s.index.Read(ctx, list, index.Query{From: from, Before: q.Until, Limit: q.Limit, Keep: func(en index.Entry) (bool, bool) {
		var e api.HistoryEntry
		if err := json.Unmarshal(en.Data, &e); err != nil {
			bad = fmt.Errorf("history entry %d is corrupt: %w", en.Seq, err)
			return false, false
		}
		in, older := q.InRange(e.At)
		if in && historyMatches(q, e) {
			out.Items = append(out.Items, e)
			return true, older
		}
		return false, older
	}})
	if errors.Is(err, index.ErrCursor) {
		return out, fmt.Errorf("%w: %w (ask again without it)", errBadQuery, err)
	}
	if err = cmp.Or(err, bad); err != nil {
		return out, fmt.Errorf("read history: %w", err)
	}
	out.Next = encodeCursor(p.Next)
	return out, nil
}

// historyMatches reports whether e passes q's filters.
func historyMatches(q api.HistoryQuery, e api.HistoryEntry) bool {
	env, repo := entryPlace(e)
	return (q.Kind == "" || q.Kind == e.Kind) && (q.Env == "" || q.Env == env) &&
		(q.Repo == "" || q.Repo == repo) && (q.Digest == "" || slices.Contains(entryDigests(e), q.Digest))
}

// allHistory reads every page of q, oldest first, up to max entries:
// for views that fold a short list whole (a digest's few moves).
func (s *store) allHistory(ctx context.Context, q api.HistoryQuery, max int) ([]api.HistoryEntry, error) {
	var out []api.HistoryEntry
	q.Limit = api.MaxLimit
	for len(out) < max {
		p, err := s.historyPage(ctx, q)
		if err != nil {
			return nil, err
		}
		out = append(out, p.Items...)
		if p.Next == "" {
			break
		}
		q.Cursor = p.Next
	}
	slices.Reverse(out)
	return out, nil
}

// A cursor is where the next page starts in the index, opaque to clients.
func encodeCursor(seq uint64) string {
	if seq == 0 {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte("1." + strconv.FormatUint(seq, 10)))
}

func decodeCursor(c string) (uint64, error) {
	if c == "" {
		return 0, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil {
		if v, ok := strings.CutPrefix(string(b), "1."); ok {
			if seq, err := strconv.ParseUint(v, 10, 64); err == nil && seq > 0 {
				return seq, nil
			}
		}
	}
	return 0, fmt.Errorf("%w: cursor %q is not one a page gave (ask again without it)", errBadQuery, c)
}

// indexHistory files in the index, oldest first, the history an earlier
// version kept in the bucket alone, until it has done so once (the
// upgrade "history-index"). A migration a crash stopped part way goes on
// where it stopped: what the index holds already is not appended again,
// except its newest entry, which may be missing from its other lists.
// Replicas starting at once append the same ids, which the index takes
// once.
func (s *store) indexHistory(ctx context.Context) error {
	if done, err := s.upgraded(ctx, "history-index"); err != nil || done {
		return err
	}
	indexed, err := s.indexedHistory(ctx)
	if err != nil {
		return fmt.Errorf("index the history: %w", err)
	}
	lister, err := s.history.ListKeysFiltered(ctx, "h.>")
	if err != nil {
		return fmt.Errorf("index the history: %w", err)
	}
	var old []api.HistoryEntry
	for key := range lister.Keys() {
		var e api.HistoryEntry
		if _, found, err := getJSON(ctx, s.history, key, &e); err != nil {
			return fmt.Errorf("index the history: %w", err)
		} else if found && !indexed[e.EventID] {
			old = append(old, e)
		}
	}
	slices.SortStableFunc(old, func(a, b api.HistoryEntry) int { return a.At.Compare(b.At) })
	for _, e := range old {
		env, repo := entryPlace(e)
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if err := s.index.Append(ctx, e.EventID, e.At, b, historyLists(env, repo, e)...); err != nil {
			return fmt.Errorf("index the history: %w", err)
		}
	}
	return s.markUpgraded(ctx, "history-index")
}

// indexedHistory is the ids of the entries on historyAll but its newest:
// read once, until the upgrade is done.
func (s *store) indexedHistory(ctx context.Context) (map[string]bool, error) {
	ids := map[string]bool{}
	newest := ""
	for q := (index.Query{Limit: 1000}); ; {
		p, err := s.index.Read(ctx, historyAll, q)
		if err != nil {
			return nil, err
		}
		for _, e := range p.Entries {
			var h api.HistoryEntry
			if err := json.Unmarshal(e.Data, &h); err != nil {
				return nil, fmt.Errorf("history entry %d is corrupt: %w", e.Seq, err)
			}
			ids[h.EventID] = true
			newest = cmp.Or(newest, h.EventID)
		}
		if p.Next == 0 {
			break
		}
		q.From = p.Next
	}
	delete(ids, newest)
	return ids, nil
}

// entryPlace is the environment and repository an entry is filed under.
func entryPlace(e api.HistoryEntry) (env, repo string) {
	switch {
	case e.Promotion != nil:
		return e.Promotion.Environment, e.Promotion.Repository
	case e.Rejection != nil:
		return e.Rejection.Environment, e.Rejection.Repository
	case e.Pin != nil:
		return e.Pin.Environment, e.Pin.Repository
	case e.Freeze != nil:
		return e.Freeze.Environment, ""
	case e.Deployment != nil:
		return e.Deployment.Environment, e.Deployment.Repository
	case e.Failure != nil && e.Failure.Release != nil: // a release's: the environment's
		return e.Failure.Release.Environment, ""
	case e.Deletion != nil:
		return "", e.Deletion.Repository
	}
	return "", ""
}
