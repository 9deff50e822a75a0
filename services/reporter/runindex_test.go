package reporter

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/digestline/digestline/pkg/service"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// seededRuns starts n runs on the bus, the oldest first, then goes on
// with each in turn (so that a run's start and its next event are far
// apart in the index): run i fails its build when i%3 is 0 (once it
// checked out commit seededCommit(i)), promotes when it is 1 (a
// promotion's run, of digest i%2), and is still running when it is 2
// (when i%6 is 2, a build's run that built seededCommit(i) and pushes).
// The builds of runs 3, 2 and 14 mod 12 are a branch's pushes that name
// their commit as they start, those of 8 mod 12 a tag's whose start names
// the tag object, and the others' builds are of a directory.
// It returns the runs' ids and a reporter API whose run index (its own
// consumer) has filed them.
func seededRuns(t *testing.T, n int) (*bustest.Server, *httptest.Server, []string) {
	t.Helper()
	srv, s := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	shortDuplicateWindow(ctx, t, srv.JetStream)
	b := bus.NewBus(srv.JetStream, "/digestline/test")
	var ids []string
	starts := map[int]cloudevents.Event{}
	digests := map[int]string{}
	for i := range n {
		id := fmt.Sprintf("run-%03d", i)
		ids = append(ids, id)
		if i%3 == 1 || i%6 == 5 {
			starts[i], digests[i] = startPromotion(ctx, t, b, id, i)
			continue
		}
		req := bustest.BuildRequest()
		switch {
		case i%6 == 3 || i%12 == 2:
			req.Source = events.Source{Kind: events.SourceGit, URL: "https://git.example/app.git", Rev: seededCommit(i), Ref: "refs/heads/main"}
		case i%12 == 8:
			req.Source = events.Source{Kind: events.SourceGit, URL: "https://git.example/app.git", Rev: strings.Repeat("e", 40), Ref: "refs/tags/v1"}
		}
		start, err := b.Start(ctx, events.BuildRequested, id, "app", req)
		if err != nil {
			t.Fatal(err)
		}
		starts[i] = start
	}
	ri, err := openRunIndexer(ctx, srv.JetStream, s.index)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = ri.router(b).Run(ctx) }()
	// Every start filed, and forgotten by the duplicate window, before
	// the runs go on.
	waitFiled(ctx, t, ri, api.RunQuery{}, n)
	time.Sleep(duplicateWindow + 50*time.Millisecond)
	for i := range n {
		var name events.Name
		var data any
		switch {
		case i%3 == 0:
			name, data = events.BuildFailed, events.Failure{Target: "registry.local/app:lab", Commit: seededCommit(i),
				Report: failure.Report{Class: "schema", Stage: "build", Message: "no such directory"}}
		case i%3 == 1:
			name, data = events.Promoted, events.Promotion{Environment: "dev", Repository: "registry.local/app", Digest: digests[i], PromotedAt: time.Now(), RunID: ids[i]}
		case i%6 == 2:
			root := v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: digest.FromString(ids[i]), Size: 1}
			name, data = events.BuildCompleted, events.BuildResult{Target: "registry.local/app:lab", Graph: oci.Graph{Root: root, Descriptors: []v1.Descriptor{root}},
				BlobStore: events.BlobBucket, Commit: seededCommit(i)}
		default:
			continue
		}
		if _, err := b.Emit(ctx, starts[i], name, "", data); err != nil {
			t.Fatal(err)
		}
	}

	r := &reporter{cfg: Config{Deps: service.Deps{JetStream: srv.JetStream}, Environments: []string{"dev"}}, store: s, runs: ri}
	hs := httptest.NewServer(r.routes())
	t.Cleanup(hs.Close)
	waitFiled(ctx, t, ri, api.RunQuery{Status: runs.Promoted}, (n+1)/3)
	return srv, hs, ids
}

// waitFiled waits until the run index lists want runs for q.
func waitFiled(ctx context.Context, t *testing.T, ri *runIndexer, q api.RunQuery, want int) {
	t.Helper()
	q.Limit = api.MaxLimit
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		p, err := ri.page(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Items) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d runs filed for %+v, want %d", len(p.Items), q, want)
		}
	}
}

// startPromotion starts seededRuns's run i, a promotion of digest i%2 to
// dev, and returns its start and the digest.
func startPromotion(ctx context.Context, t *testing.T, b *bus.Bus, id string, i int) (cloudevents.Event, string) {
	t.Helper()
	d := fmt.Sprintf("sha256:%064x", i%2)
	start, err := b.Start(ctx, events.PromotionRequested, id, "app", events.PromotionRequest{Repository: "registry.local/app", Digest: d, To: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	return start, d
}

// duplicateWindow is the shortest the server takes.
const duplicateWindow = 100 * time.Millisecond

// shortDuplicateWindow makes the index forget appends' ids soon: a run
// filed twice in a list then shows twice, as it would when its start and
// its end are more than the window apart.
func shortDuplicateWindow(ctx context.Context, t *testing.T, js jetstream.JetStream) {
	t.Helper()
	st, err := js.Stream(ctx, events.IndexStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.Duplicates = duplicateWindow
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

// seededCommit is the commit seededRuns's run i checked out: one of four.
func seededCommit(i int) string { return strings.Repeat(string("abcd"[i%4]), 40) }

// runPages follows a run query's pages to the end and returns the ids.
func runPages(t *testing.T, base string, q url.Values) []string {
	t.Helper()
	var ids []string
	for {
		var p api.Page[runs.Run]
		if code := httpJSON(t, base+"/v1/runs?"+q.Encode(), &p); code != http.StatusOK {
			t.Fatalf("GET /v1/runs?%s: %d", q.Encode(), code)
		}
		for _, run := range p.Items {
			ids = append(ids, run.ID)
		}
		if p.Next == "" {
			return ids
		}
		q.Set("cursor", p.Next)
	}
}

// TestRunsPageNewestFirstByStatusAndDigest: GET /v1/runs lists every run,
// newest started first, through cursors; by status (running ones too), by
// digest and by commit, it lists exactly the runs that match.
func TestRunsPageNewestFirstByStatusAndDigest(t *testing.T) {
	t.Parallel()
	_, hs, ids := seededRuns(t, 24)
	want := func(keep func(i int) bool) []string {
		var out []string
		for i, id := range slices.Backward(ids) {
			if keep(i) {
				out = append(out, id)
			}
		}
		return out
	}
	for _, tc := range []struct {
		query string
		keep  func(i int) bool
	}{
		{"", func(int) bool { return true }},
		{"status=failed", func(i int) bool { return i%3 == 0 }},
		{"status=promoted", func(i int) bool { return i%3 == 1 }},
		{"status=running", func(i int) bool { return i%3 == 2 }},
		{"digest=" + fmt.Sprintf("sha256:%064x", 1), func(i int) bool { return i%3 == 1 && i%2 == 1 }},
		{"repo=registry.local/app&status=promoted", func(i int) bool { return i%3 == 1 }},
		// By commit, each run once, filed when it named the commit: as it
		// started (a branch's push), once built (a tag's), or as its build
		// failed (a directory's, in this test); running ones too.
		{"commit=" + seededCommit(0), func(i int) bool { return (i%3 == 0 || i%6 == 2) && i%4 == 0 }},
		{"commit=" + seededCommit(1), func(i int) bool { return i%3 == 0 && i%4 == 1 }},
		{"commit=" + strings.ToUpper(seededCommit(2)) + "&status=failed", func(i int) bool { return i%3 == 0 && i%4 == 2 }},
		{"commit=" + seededCommit(2), func(i int) bool { return (i%3 == 0 || i%6 == 2) && i%4 == 2 }},
		{"commit=" + seededCommit(2) + "&status=running", func(i int) bool { return i%6 == 2 && i%4 == 2 }},
		// The tag's pushes named the tag object: their runs are listed
		// under it too, from their start.
		{"commit=" + strings.Repeat("e", 40), func(i int) bool { return i%12 == 8 }},
	} {
		t.Run(tc.query, func(t *testing.T) {
			q, _ := url.ParseQuery(tc.query)
			q.Set("limit", "5")
			got, want := runPages(t, hs.URL, q), want(tc.keep)
			if q.Has("commit") { // newest filed first, not started
				got, want = slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))
			}
			if !slices.Equal(got, want) {
				t.Errorf("\n got %v\nwant %v", got, want)
			}
		})
	}
	for _, q := range []string{"status=done", "limit=0", "digest=sha256:1", "cursor=x", "commit=bbbbbbb", "commit=" + strings.Repeat("g", 40)} {
		var p api.Page[runs.Run]
		if code := httpJSON(t, hs.URL+"/v1/runs?"+q, &p); code != http.StatusBadRequest {
			t.Errorf("?%s: %d, want 400", q, code)
		}
	}
}

// TestARunPastRetentionKeepsItsSummary: once a run's events are gone from
// the stream, its summary is still listed, served and shown on its page.
func TestARunPastRetentionKeepsItsSummary(t *testing.T) {
	t.Parallel()
	srv, hs, ids := seededRuns(t, 3)
	failed := ids[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	purgeRun(ctx, t, srv.JetStream, failed)
	var run runs.Run
	if code := httpJSON(t, hs.URL+"/v1/runs/"+failed+"/summary", &run); code != http.StatusOK || run.Status != runs.Failed || run.Err == nil || run.Err.Failure.Message != "no such directory" {
		t.Fatalf("summary past retention: %d %+v", code, run)
	}
	if got := runPages(t, hs.URL, url.Values{"status": {"failed"}}); !slices.Equal(got, []string{failed}) {
		t.Errorf("failed runs: %v", got)
	}
	resp, err := http.Get(hs.URL + "/runs/" + failed)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "past the stream&#39;s retention") || !strings.Contains(string(body), "no such directory") {
		t.Errorf("the run's page past retention: %d\n%s", resp.StatusCode, body)
	}
}

// purgeRun takes the run's events out of the streams, as their retention
// does: the events, and the run log they are read from, age out alike.
func purgeRun(ctx context.Context, t *testing.T, js jetstream.JetStream, id string) {
	t.Helper()
	purge := map[string][]string{events.RunLogStream: {events.RunLogFilter(id)}}
	for _, n := range events.Names() {
		purge[events.StreamName] = append(purge[events.StreamName], n.Subject(id))
	}
	for stream, subjects := range purge {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		for _, subject := range subjects {
			if err := s.Purge(ctx, jetstream.WithPurgeSubject(subject)); err != nil {
				t.Fatal(err)
			}
		}
	}
}
