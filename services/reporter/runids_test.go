package reporter

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/digestline/digestline/pkg/service"
)

// TestARunIsNamedByAPrefixOfItsID: GET /v1/runs/{prefix} (what `digestline
// run show` and the page ask) answers with the one run whose id starts
// with the prefix, says which runs share one that is ambiguous, and says
// why a prefix names none or is too short to look up.
func TestARunIsNamedByAPrefixOfItsID(t *testing.T) {
	t.Parallel()
	ids := []string{"abcd1234-0001", "abcd1299-0002", "ffff0000-0003"}
	hs, ri, _, b := runIndexAPI(t)
	js := b.JetStream()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, id := range ids {
		startRun(ctx, t, b, id)
	}
	go func() { _ = ri.router(b).Run(ctx) }()
	waitResolved(ctx, t, ri, ids[2])

	for _, c := range []struct {
		prefix, want string
		status       int
	}{
		{"abcd123", ids[0], http.StatusOK},
		{"ffff", ids[2], http.StatusOK},
		{ids[1], ids[1], http.StatusOK},
		{"abcd12", "abcd1234-0001, abcd1299-0002 (give more of it)", http.StatusConflict},
		{"abc", "too short", http.StatusBadRequest},
		{"0000", "no run id starts with 0000", http.StatusNotFound},
		{"ffff0001", "no run id starts with ffff0001", http.StatusNotFound},
		{"ffff/steps", "no such endpoint: GET /v1/runs/ffff/steps", http.StatusNotFound}, // in JSON, as every API error
	} {
		status, got := getRunByPrefix(t, hs.URL, c.prefix)
		if status != c.status || !strings.Contains(got, c.want) {
			t.Errorf("GET /v1/runs/%s: %d %s, want %d %s", c.prefix, status, got, c.status, c.want)
		}
	}
	// Its summary too, once its events are past the stream's retention.
	purgeRun(ctx, t, js, ids[2])
	var run runs.Run
	if code := httpJSON(t, hs.URL+"/v1/runs/ffff/summary", &run); code != http.StatusOK || run.ID != ids[2] {
		t.Errorf("GET /v1/runs/ffff/summary past retention: %d %+v", code, run)
	}
	resp, err := http.Get(hs.URL + "/runs/ffff")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/runs/"+ids[2] || !strings.Contains(string(body), "past the stream&#39;s retention") {
		t.Errorf("/runs/ffff past retention: %d at %s\n%s", resp.StatusCode, resp.Request.URL.Path, body)
	}
}

// TestRunsFromBeforeTheIDListsAreNamedByAPrefix: runs that started before
// the reporter kept its lists of ids (their starts are in the stream, in
// no list) are filed in them as it starts, once.
func TestRunsFromBeforeTheIDListsAreNamedByAPrefix(t *testing.T) {
	t.Parallel()
	hs, ri, s, b := runIndexAPI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	startRun(ctx, t, b, "beef0001-old")
	if status, _ := getRunByPrefix(t, hs.URL, "beef"); status != http.StatusNotFound {
		t.Fatalf("a run in no list: %d, want 404 before the upgrade", status)
	}
	for range 2 {
		if err := ri.fileRunIDs(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if status, got := getRunByPrefix(t, hs.URL, "beef"); status != http.StatusOK || !strings.Contains(got, "beef0001-old") {
		t.Errorf("GET /v1/runs/beef after the upgrade: %d %s", status, got)
	}
	if done, err := s.upgraded(ctx, "run-ids"); err != nil || !done {
		t.Errorf("the upgrade is not marked done: %v", err)
	}
}

// runIndexAPI is a reporter API over a fresh bus, its run indexer (not
// yet routing), its store and a bus to start runs on.
func runIndexAPI(t *testing.T) (*httptest.Server, *runIndexer, *store, *bus.Bus) {
	t.Helper()
	srv, s := newStore(t)
	ri, err := openRunIndexer(context.Background(), srv.JetStream, s.index)
	if err != nil {
		t.Fatal(err)
	}
	r := &reporter{cfg: Config{Deps: service.Deps{JetStream: srv.JetStream}, Environments: []string{"dev"}}, store: s, runs: ri}
	hs := httptest.NewServer(r.routes())
	t.Cleanup(hs.Close)
	return hs, ri, s, bus.NewBus(srv.JetStream, "/digestline/test")
}

// startRun starts the run id with a build request.
func startRun(ctx context.Context, t *testing.T, b *bus.Bus, id string) {
	t.Helper()
	if _, err := b.Start(ctx, events.BuildRequested, id, "app", bustest.BuildRequest()); err != nil {
		t.Fatal(err)
	}
}

// waitResolved waits until the run indexer has filed the run id.
func waitResolved(ctx context.Context, t *testing.T, ri *runIndexer, id string) {
	t.Helper()
	for {
		if got, err := ri.resolve(ctx, id); err == nil && got == id {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("run %s was not filed", id)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// getRunByPrefix GETs /v1/runs/{prefix}: its status, and the run id it
// answered with (Content-Location) or its error.
func getRunByPrefix(t *testing.T, base, prefix string) (int, string) {
	t.Helper()
	resp, err := http.Get(base + "/v1/runs/" + prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, strings.TrimPrefix(resp.Header.Get("Content-Location"), "/v1/runs/")
	}
	body, _ := io.ReadAll(resp.Body)
	var e struct{ Error string }
	_ = json.Unmarshal(body, &e)
	return resp.StatusCode, e.Error
}
