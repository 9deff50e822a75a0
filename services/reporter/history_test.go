package reporter

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/service"
)

// newStore is a store on a bus of its own.
func newStore(t testing.TB) (*bustest.Server, *store) {
	t.Helper()
	srv := bustest.NewServer(t)
	s, err := openStore(context.Background(), srv.JetStream)
	if err != nil {
		t.Fatal(err)
	}
	return srv, s
}

// historyServer is a reporter's API over a store seeded with n entries
// (through the store's own write path), oldest first as returned: two
// environments, two repositories, ten digests, one in five a rejection,
// a minute apart from t0.
func historyServer(t *testing.T, n int) (*httptest.Server, *store, []api.HistoryEntry, time.Time) {
	t.Helper()
	srv, s := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	held := map[string]string{}
	var seeded []api.HistoryEntry
	for i := range n {
		env, repo := []string{"dev", "prod"}[i%2], []string{"reg.example/a", "reg.example/b"}[(i/2)%2]
		d := fmt.Sprintf("sha256:%064x", i%10)
		at := t0.Add(time.Duration(i) * time.Minute)
		e := api.HistoryEntry{Kind: "promoted", At: at, RunID: fmt.Sprintf("run-%d", i), EventID: fmt.Sprintf("ev-%d", i)}
		if i%5 == 4 {
			e.Kind, e.Rejection = "rejected", &events.Rejection{Environment: env, Repository: repo, Digest: d, Gate: "verified", RejectedAt: at}
		} else {
			e.Promotion = &events.Promotion{Environment: env, Repository: repo, Digest: d, PromotedAt: at, PreviousDigest: held[env+repo], RunID: e.RunID}
			held[env+repo] = d
		}
		for range 2 { // a redelivery files it once
			if err := s.addHistory(ctx, env, repo, e); err != nil {
				t.Fatal(err)
			}
		}
		seeded = append(seeded, e)
	}
	r := &reporter{cfg: Config{Deps: service.Deps{JetStream: srv.JetStream}, Environments: []string{"dev", "prod"}}, store: s}
	hs := httptest.NewServer(r.routes())
	t.Cleanup(hs.Close)
	return hs, s, seeded, t0
}

// getPages follows a history query's pages to the end.
func getPages(t *testing.T, base string, q url.Values) (all []api.HistoryEntry, pages int) {
	t.Helper()
	for {
		var p api.Page[api.HistoryEntry]
		if code := httpJSON(t, base+"/v1/history?"+q.Encode(), &p); code != http.StatusOK {
			t.Fatalf("GET /v1/history?%s: %d", q.Encode(), code)
		}
		pages++
		all = append(all, p.Items...)
		if p.Next == "" {
			return all, pages
		}
		q.Set("cursor", p.Next)
	}
}

func httpJSON(t *testing.T, u string, v any) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}

// TestHistoryPagesNewestFirstWithEveryFilter: GET /v1/history returns
// exactly the entries each filter (environment, repository, digest, kind,
// time range, and their combinations) selects, newest first, through
// cursors that neither skip nor repeat one; a redelivered entry is there
// once.
func TestHistoryPagesNewestFirstWithEveryFilter(t *testing.T) {
	t.Parallel()
	hs, _, seeded, t0 := historyServer(t, 120)
	d3 := fmt.Sprintf("sha256:%064x", 3)
	for _, tc := range []struct {
		query string
		match func(api.HistoryEntry) bool
	}{
		{"", func(api.HistoryEntry) bool { return true }},
		{"env=prod", func(e api.HistoryEntry) bool { env, _ := entryPlace(e); return env == "prod" }},
		{"repo=reg.example/b", func(e api.HistoryEntry) bool { _, repo := entryPlace(e); return repo == "reg.example/b" }},
		{"env=dev&repo=reg.example/a", func(e api.HistoryEntry) bool {
			env, repo := entryPlace(e)
			return env == "dev" && repo == "reg.example/a"
		}},
		{"kind=rejected", func(e api.HistoryEntry) bool { return e.Kind == "rejected" }},
		{"digest=" + d3, func(e api.HistoryEntry) bool { return slices.Contains(entryDigests(e), d3) }},
		{"digest=" + d3 + "&env=prod&kind=promoted", func(e api.HistoryEntry) bool {
			env, _ := entryPlace(e)
			return env == "prod" && e.Kind == "promoted" && slices.Contains(entryDigests(e), d3)
		}},
		{"since=" + t0.Add(30*time.Minute).Format(time.RFC3339) + "&until=" + t0.Add(70*time.Minute).Format(time.RFC3339), func(e api.HistoryEntry) bool {
			return !e.At.Before(t0.Add(30*time.Minute)) && e.At.Before(t0.Add(70*time.Minute))
		}},
		{"env=dev&until=" + t0.Add(50*time.Minute).Format(time.RFC3339), func(e api.HistoryEntry) bool {
			env, _ := entryPlace(e)
			return env == "dev" && e.At.Before(t0.Add(50*time.Minute))
		}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			q, _ := url.ParseQuery(tc.query)
			q.Set("limit", "7")
			got, pages := getPages(t, hs.URL, q)
			var want []string
			for _, e := range slices.Backward(seeded) {
				if tc.match(e) {
					want = append(want, e.EventID)
				}
			}
			var ids []string
			for _, e := range got {
				ids = append(ids, e.EventID)
			}
			if !slices.Equal(ids, want) {
				t.Errorf("%d entries in %d pages:\n got %v\nwant %v", len(ids), pages, ids, want)
			}
		})
	}
}

// TestHistoryQueriesThatCannotBeAnsweredSayWhy: a bad limit, kind, time,
// digest or cursor, and a cursor of another query, are the client's
// mistakes (400), not an empty page.
func TestHistoryQueriesThatCannotBeAnsweredSayWhy(t *testing.T) {
	t.Parallel()
	hs, _, _, _ := historyServer(t, 12)
	var dev api.Page[api.HistoryEntry]
	if httpJSON(t, hs.URL+"/v1/history?env=dev&limit=2", &dev) != http.StatusOK || dev.Next == "" {
		t.Fatalf("a first page: %+v", dev)
	}
	for _, q := range []string{"limit=0", "limit=501", "limit=ten", "kind=moved", "since=yesterday",
		"since=2026-11-02T00:00:00Z&until=2026-11-01T00:00:00Z", "digest=sha256:beef", "cursor=garbage",
		"env=prod&cursor=" + dev.Next} {
		var p api.Page[api.HistoryEntry]
		if code := httpJSON(t, hs.URL+"/v1/history?"+q, &p); code != http.StatusBadRequest {
			t.Errorf("?%s: %d, want 400", q, code)
		}
	}
}

// TestHistoryKeptBeforeTheIndexIsIndexedOnce: history an earlier version
// kept in the bucket alone is indexed at start, oldest first, and only
// once however often the reporter starts.
func TestHistoryKeptBeforeTheIndexIsIndexedOnce(t *testing.T) {
	t.Parallel()
	_, s := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	putOldHistory(ctx, t, s, 5)
	for range 2 {
		if err := s.indexHistory(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if ids := historyIDs(ctx, t, s, api.HistoryQuery{Env: "dev"}); ids != "[old-4 old-3 old-2 old-1 old-0]" {
		t.Errorf("indexed history: %v", ids)
	}
}

// TestHistoryIndexingStoppedPartWayGoesOn: a reporter that crashed while
// it indexed the history (two entries filed, the third on one list of its
// five) finishes the job as it starts again: every entry on every list.
func TestHistoryIndexingStoppedPartWayGoesOn(t *testing.T) {
	t.Parallel()
	_, s := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	old := putOldHistory(ctx, t, s, 5)
	for i, e := range old[:3] {
		lists := historyLists("dev", "reg.example/a", e)
		if i == 2 {
			lists = lists[:1] // historyAll alone: the crash came here
		}
		b, _ := json.Marshal(e)
		if err := s.index.Append(ctx, e.EventID, e.At, b, lists...); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.indexHistory(ctx); err != nil {
		t.Fatal(err)
	}
	for _, q := range []api.HistoryQuery{{}, {Env: "dev"}, {Repo: "reg.example/a"}, {Env: "dev", Repo: "reg.example/a"}} {
		if ids := historyIDs(ctx, t, s, q); ids != "[old-4 old-3 old-2 old-1 old-0]" {
			t.Errorf("history ?%s after the indexing went on: %v", q.Values().Encode(), ids)
		}
	}
	if ids := historyIDs(ctx, t, s, api.HistoryQuery{Digest: old[2].Promotion.Digest}); ids != "[old-2]" {
		t.Errorf("history of old-2's digest: %v", ids)
	}
}

// putOldHistory puts n promotions to dev of reg.example/a into the history
// bucket alone, as a version before the index did, a minute apart.
func putOldHistory(ctx context.Context, t *testing.T, s *store, n int) []api.HistoryEntry {
	t.Helper()
	t0 := time.Now().Add(-time.Hour)
	var old []api.HistoryEntry
	for i := range n {
		e := api.HistoryEntry{Kind: "promoted", At: t0.Add(time.Duration(i) * time.Minute), EventID: fmt.Sprint("old-", i),
			Promotion: &events.Promotion{Environment: "dev", Repository: "reg.example/a", Digest: fmt.Sprintf("sha256:%064x", i)}}
		b, _ := json.Marshal(e)
		if _, err := s.history.Put(ctx, historyKey("dev", "reg.example/a", e.EventID), b); err != nil {
			t.Fatal(err)
		}
		old = append(old, e)
	}
	return old
}

// historyIDs is the ids on the first page of q, newest first.
func historyIDs(ctx context.Context, t *testing.T, s *store, q api.HistoryQuery) string {
	t.Helper()
	q.Limit = 10
	p, err := s.historyPage(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range p.Items {
		ids = append(ids, e.EventID)
	}
	return fmt.Sprint(ids)
}
