package reporter

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/runs"
)

// A page that cannot be shown (an unknown run, environment or digest) is
// a page that says why, with the header's links and one to the front
// page, not a bare line of text.
func TestAPageThatCannotBeShownSaysWhyAndLeadsOn(t *testing.T) {
	t.Parallel()
	hs, _, _, _ := runIndexAPI(t)
	for _, c := range []struct {
		path, why string
		status    int
	}{
		{"/runs/0000", "no run id starts with 0000", http.StatusNotFound},
		{"/runs/ab", "give its first 4 characters or more", http.StatusBadRequest},
		{"/envs/nope", "&#34;nope&#34; is not in the promotion chain dev", http.StatusNotFound},
		{"/digests/sha256:abc", "want sha256:&lt;64 hex digits&gt;", http.StatusBadRequest},
	} {
		resp, err := http.Get(hs.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		page := string(body)
		if resp.StatusCode != c.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
			!strings.Contains(page, c.why) || !strings.Contains(page, `href="/envs/dev"`) || !strings.Contains(page, `<a href="/">front page</a>`) {
			t.Errorf("GET %s: %d %s, want %d, a page saying %q with links on:\n%s", c.path, resp.StatusCode,
				resp.Header.Get("Content-Type"), c.status, c.why, page)
		}
	}
}

// A running run that has had no event for a while, and waits for a
// service that is not running, says so on its page and in its summary
// (which run follow reads); the front page says what it waits for.
func TestARunsPageSaysWhichStoppedServiceItWaitsFor(t *testing.T) {
	t.Parallel()
	hs, ri, _, b := runIndexAPI(t)
	js := b.JetStream()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() { _ = ri.router(b).Run(ctx) }()
	ev, err := events.NewEvent("/t", events.BuildRequested, "0ld0-run", "app", bustest.BuildRequest())
	if err != nil {
		t.Fatal(err)
	}
	ev.SetTime(time.Now().Add(-time.Minute))
	if err := b.Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}
	page := func() string {
		for {
			resp, err := http.Get(hs.URL + "/runs/0ld0-run")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return string(body)
			}
			if ctx.Err() != nil {
				t.Fatalf("the run's page: %d\n%s", resp.StatusCode, body)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if p := page(); !strings.Contains(p, "no builder has ever run on this bus") {
		t.Fatalf("the page of a run no builder ever took does not say so:\n%s", p)
	}
	// The front page lists it as waiting for the builder.
	waitResolved(ctx, t, ri, "0ld0-run")
	resp, err := http.Get(hs.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	front, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(front), `<div class="retries">waits for the builder</div>`) {
		t.Fatalf("the front page does not say what the quiet run waits for:\n%s", front)
	}
	bustest.Departed(t, js, "builder", events.BuildRequested)
	if p := page(); !strings.Contains(p, "the run waits for the builder, which is not running") {
		t.Fatalf("the page of a run whose builder stopped does not say so:\n%s", p)
	}
	var run runs.Run
	if code := httpJSON(t, hs.URL+"/v1/runs/0ld0/summary", &run); code != http.StatusOK || run.WaitsFor != "builder" ||
		!strings.Contains(run.Waiting, "the run waits for the builder, which is not running") {
		t.Fatalf("GET /v1/runs/0ld0/summary: %d, waits for %q: %q", code, run.WaitsFor, run.Waiting)
	}
}
