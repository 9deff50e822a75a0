package api

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/opencontainers/go-digest"
)

// Page is one page of a list the API returns newest first. Next, when
// set, is the cursor of the page after it: ask again with ?cursor=Next and
// the same filters. A page may hold fewer than limit items and still have
// a Next when the filters skip many: each page reads a bounded number of
// entries, whatever the history's length.
type Page[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next,omitempty"`
}

// Page sizes: DefaultLimit when a request names none, MaxLimit at most.
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

// ListQuery is what every list endpoint takes: where to start (a cursor
// from a page's Next), how many items at most, and a time range
// (Since inclusive, Until exclusive; zero: open).
type ListQuery struct {
	Cursor       string
	Limit        int
	Since, Until time.Time
}

// HistoryKinds are the kinds of history entry: a promotion, a rejection,
// a promotion overtaken by a newer one, a rollback, an environment pinned
// (by a rollback) and unpinned, frozen and unfrozen, a deployer's report
// of a deployment that went well or failed, and a release of several
// images promoted as one (the images' own entries are promoted or
// rollback) or failed, and a manifest garbage collection deleted.
var HistoryKinds = []string{"promoted", "rejected", "superseded", "rollback", "pinned", "unpinned", "frozen", "unfrozen", "deployed", "deploy-failed", "release", "release-failed", "deleted"}

// HistoryQuery filters GET /v1/history: every filter set must match.
type HistoryQuery struct {
	ListQuery
	Env, Repo, Digest string
	// Kind is one of HistoryKinds.
	Kind string
}

// Values is q as the query of a request.
func (q HistoryQuery) Values() url.Values {
	v := q.ListQuery.Values()
	for k, s := range map[string]string{"env": q.Env, "repo": q.Repo, "digest": q.Digest, "kind": q.Kind} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

// ParseHistoryQuery reads a GET /v1/history query, naming what is wrong.
func ParseHistoryQuery(v url.Values) (HistoryQuery, error) {
	lq, err := ParseListQuery(v)
	q := HistoryQuery{ListQuery: lq, Env: v.Get("env"), Repo: v.Get("repo"), Digest: v.Get("digest"), Kind: v.Get("kind")}
	if err != nil {
		return q, err
	}
	if q.Kind != "" && !slices.Contains(HistoryKinds, q.Kind) {
		return q, fmt.Errorf("kind %q: one of %s", q.Kind, strings.Join(HistoryKinds, ", "))
	}
	if q.Digest != "" {
		if _, err := digest.Parse(q.Digest); err != nil {
			return q, fmt.Errorf("digest %q: want sha256:<64 hex digits>", q.Digest)
		}
	}
	return q, nil
}

// RunQuery filters GET /v1/runs: every filter set must match. Without
// one, runs come newest started first; with a status other than running,
// a digest, a repository or a commit, they are the runs that ended so,
// newest ended first.
type RunQuery struct {
	ListQuery
	// Status is running, promoted, rejected or failed.
	Status, Digest, Repo string
	// Commit is a git commit's full id: the runs that built it (runs.Run's
	// Commit).
	Commit string
}

// Values is q as the query of a request.
func (q RunQuery) Values() url.Values {
	v := q.ListQuery.Values()
	for k, s := range map[string]string{"status": q.Status, "digest": q.Digest, "repo": q.Repo, "commit": q.Commit} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

// RunStatuses are the statuses a run has: running until it ends, then
// how it ended.
var RunStatuses = []string{"running", "promoted", "superseded", "rejected", "failed"}

// ParseRunQuery reads a GET /v1/runs query, naming what is wrong.
func ParseRunQuery(v url.Values) (RunQuery, error) {
	lq, err := ParseListQuery(v)
	q := RunQuery{ListQuery: lq, Status: v.Get("status"), Digest: v.Get("digest"), Repo: v.Get("repo"), Commit: strings.ToLower(v.Get("commit"))}
	if err != nil {
		return q, err
	}
	if q.Status != "" && !slices.Contains(RunStatuses, q.Status) {
		return q, fmt.Errorf("status %q: want one of %s", q.Status, strings.Join(RunStatuses, ", "))
	}
	if q.Digest != "" {
		if _, err := digest.Parse(q.Digest); err != nil {
			return q, fmt.Errorf("digest %q: want sha256:<64 hex digits>", q.Digest)
		}
	}
	if q.Commit != "" && !events.IsCommitID(q.Commit) {
		return q, fmt.Errorf("commit %q: want a commit's full id, 40 hex digits (64 in a SHA-256 repository): git rev-parse %s prints it", q.Commit, q.Commit)
	}
	return q, nil
}

// Values is q as the query of a request.
func (q ListQuery) Values() url.Values {
	v := url.Values{}
	if q.Cursor != "" {
		v.Set("cursor", q.Cursor)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.Format(time.RFC3339Nano))
	}
	return v
}

// ParseListQuery reads cursor, limit (DefaultLimit when absent), since
// and until (RFC 3339 times) from a request's query.
func ParseListQuery(v url.Values) (ListQuery, error) {
	q := ListQuery{Cursor: v.Get("cursor"), Limit: DefaultLimit}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			return q, fmt.Errorf("limit %q: a number from 1 to %d", s, MaxLimit)
		}
		q.Limit = n
	}
	for name, t := range map[string]*time.Time{"since": &q.Since, "until": &q.Until} {
		s := v.Get(name)
		if s == "" {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return q, fmt.Errorf("%s %q: an RFC 3339 time, e.g. 2026-12-01T00:00:00Z", name, s)
		}
		*t = at
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return q, errors.New("since must be before until")
	}
	return q, nil
}

// InRange reports whether t is in q's time range, and whether anything
// older could be (false once t is before Since: a newest-first list ends).
func (q ListQuery) InRange(t time.Time) (in, older bool) {
	if !q.Since.IsZero() && t.Before(q.Since) {
		return false, false
	}
	return q.Until.IsZero() || t.Before(q.Until), true
}
