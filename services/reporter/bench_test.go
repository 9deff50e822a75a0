package reporter

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/digestline/digestline/pkg/service"
	"github.com/google/uuid"
)

// BenchmarkAPIHistory measures GET /v1/history at 1k, 10k and 100k
// entries (BENCH_HISTORY_SIZES overrides, e.g. "1000,10000"), seeded
// through the store's own write path: the first page, a page deep in the
// history (by its cursor), an environment's page and a time range's, each
// with its p50 and p99 over the iterations. The goal: p99 ≤ 50 ms for any
// page at 100k, flat from 1k.
func BenchmarkAPIHistory(b *testing.B) {
	for _, n := range benchSizes(b) {
		hs, t0, deep := seedHistory(b, n)
		mid := t0.Add(time.Duration(n/2) * time.Minute).Format(time.RFC3339)
		for _, q := range []struct{ name, query string }{
			{"first", "limit=20"},
			{"deep", "limit=20&cursor=" + deep},
			{"env", "env=prod&limit=20"},
			{"until", "until=" + mid + "&limit=20"},
		} {
			b.Run(fmt.Sprintf("%dk/%s", n/1000, q.name), func(b *testing.B) {
				timeGets(b, hs.URL+"/v1/history?"+q.query)
			})
		}
	}
}

// BenchmarkAPIRuns measures GET /v1/runs at 1k, 10k and 100k runs (as
// BenchmarkAPIHistory, BENCH_HISTORY_SIZES overrides), each run filed
// through the run indexer's own writes as it starts and as it ends: the
// first page, a page deep in the list (by its cursor), the newest failed
// runs (one in ten), and an old run's summary named by the first 8
// characters of its id (as `digestline run show` takes it).
func BenchmarkAPIRuns(b *testing.B) {
	for _, n := range benchSizes(b) {
		hs, deep := seedRuns(b, n)
		for _, q := range []struct{ name, path string }{
			{"first", "/v1/runs?limit=20"},
			{"deep", "/v1/runs?limit=20&cursor=" + deep},
			{"failed", "/v1/runs?status=failed&limit=20"},
			{"prefix", "/v1/runs/" + seededRunID(n / 10)[:8] + "/summary"},
		} {
			b.Run(fmt.Sprintf("%dk/%s", n/1000, q.name), func(b *testing.B) {
				timeGets(b, hs.URL+q.path)
			})
		}
	}
}

// seededRunID is the id of the ith run seedRuns files: a UUID, as the
// pipeline's run ids are, the same in every run of the benchmark.
func seededRunID(i int) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte(strconv.Itoa(i))).String()
}

// benchSizes are the history sizes the API benchmarks seed.
func benchSizes(b *testing.B) []int {
	s := os.Getenv("BENCH_HISTORY_SIZES")
	if s == "" {
		return []int{1000, 10000, 100000}
	}
	var sizes []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(f)
		if err != nil {
			b.Fatal(err)
		}
		sizes = append(sizes, n)
	}
	return sizes
}

// seedRuns files n ended runs, a second apart, as the run indexer files
// them (its index appends and its summary writes): one in ten failed, the
// rest promoted, over four repositories. It returns the API and the
// cursor of a page nine tenths down the list of every run.
func seedRuns(b *testing.B, n int) (*httptest.Server, string) {
	b.Helper()
	srv, s := newStore(b)
	ctx := context.Background()
	ri, err := openRunIndexer(ctx, srv.JetStream, s.index)
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	start := time.Now()
	for i := range n {
		run := &runs.Run{ID: seededRunID(i), Target: fmt.Sprintf("reg.example/app-%d:1", i%4), Digest: fmt.Sprintf("sha256:%064x", i),
			Status: runs.Promoted, Started: t0.Add(time.Duration(i) * time.Second)}
		if i%10 == 0 {
			run.Status = runs.Failed
		}
		run.Updated = run.Started.Add(time.Second / 2)
		if err := ri.fileStart(ctx, run); err != nil {
			b.Fatal(err)
		}
		if err := ri.index.Append(ctx, run.ID, run.Updated, []byte(run.ID), runEndLists(run)...); err != nil {
			b.Fatal(err)
		}
		if err := ri.put(ctx, run, storedRun{}, func(cur *runs.Run) bool { return cur == nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("seeded %d runs in %s", n, time.Since(start).Round(time.Millisecond))
	r := &reporter{cfg: Config{Deps: service.Deps{JetStream: srv.JetStream}, Environments: []string{"dev", "prod"}}, store: s, runs: ri}
	hs := httptest.NewServer(r.routes())
	b.Cleanup(hs.Close)
	q := api.RunQuery{ListQuery: api.ListQuery{Limit: api.MaxLimit}}
	for read := 0; read < n*9/10; {
		p, err := ri.page(ctx, q)
		if err != nil {
			b.Fatal(err)
		}
		read += len(p.Items)
		q.Cursor = p.Next
	}
	return hs, q.Cursor
}

// timeGets GETs u b.N times and reports the latencies' p50 and p99.
func timeGets(b *testing.B, u string) {
	b.Helper()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		resp, err := http.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s: %d", u, resp.StatusCode)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

// seedHistory files n history entries, a minute apart, through
// store.addHistory, in time order (two environments, four
// repositories, a hundred digests), and returns the API, the first
// entry's time and the cursor of a page nine tenths down the history.
func seedHistory(b *testing.B, n int) (*httptest.Server, time.Time, string) {
	b.Helper()
	srv, s := newStore(b)
	ctx := context.Background()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	start := time.Now()
	var wg sync.WaitGroup
	const writers = 1 // entries are appended in time order, as the reporter records them
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				env, repo := []string{"dev", "prod"}[i%2], fmt.Sprintf("reg.example/app-%d", i%4)
				at := t0.Add(time.Duration(i) * time.Minute)
				e := api.HistoryEntry{Kind: "promoted", At: at, RunID: fmt.Sprint("run-", i), EventID: fmt.Sprint("ev-", i),
					Promotion: &events.Promotion{Environment: env, Repository: repo, Digest: fmt.Sprintf("sha256:%064x", i%100), PromotedAt: at}}
				if err := s.addHistory(ctx, env, repo, e); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.Logf("seeded %d history entries in %s", n, time.Since(start).Round(time.Millisecond))
	r := &reporter{cfg: Config{Deps: service.Deps{JetStream: srv.JetStream}, Environments: []string{"dev", "prod"}}, store: s}
	hs := httptest.NewServer(r.routes())
	b.Cleanup(hs.Close)
	// The cursor nine tenths down, by paging there.
	q := api.HistoryQuery{ListQuery: api.ListQuery{Limit: api.MaxLimit}}
	for read := 0; read < n*9/10; {
		p, err := s.historyPage(ctx, q)
		if err != nil {
			b.Fatal(err)
		}
		read += len(p.Items)
		q.Cursor = p.Next
	}
	return hs, t0, q.Cursor
}
