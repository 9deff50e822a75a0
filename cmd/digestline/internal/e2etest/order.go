package e2etest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/ship"
	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// OneTagRuns is how many runs the tests that ship to one tag ship, and how
// many at a time: 24, 4 at a time, unless DIGESTLINE_ONE_TAG says RUNSxAT
// (make bench runs 200x8).
func OneTagRuns(t testing.TB) (n, parallel int) {
	t.Helper()
	v := os.Getenv("DIGESTLINE_ONE_TAG")
	if v == "" {
		return 24, 4
	}
	if _, err := fmt.Sscanf(v, "%dx%d", &n, &parallel); err != nil || n < 1 || parallel < 1 {
		t.Fatalf("DIGESTLINE_ONE_TAG=%q: want RUNSxAT, e.g. 200x8", v)
	}
	return n, parallel
}

// ShipToOneTag ships n different trees to target (registry/repository:tag),
// parallel at a time, as CI does when commits land close together, and
// returns the run ids. A ship that fails only because the bus was away
// (say, while a node was killed) is shipped again, as a user would; a run
// that ends failed or rejected is left for LandedInOrder to report.
func ShipToOneTag(t testing.TB, b *bus.Bus, target string, n, parallel int) []string {
	t.Helper()
	ids := make([]string, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range parallel {
		wg.Go(func() {
			for i := range next {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
				for {
					res, err := ship.Ship(ctx, b, ship.Request{Dir: SourceDir(t, fmt.Sprintf("commit %d", i)), Target: target,
						Spec: events.BuildSpec{Entrypoint: []string{"/bin/app"}}}, io.Discard)
					if res.RunID != "" || ctx.Err() != nil {
						ids[i] = res.RunID
						if res.RunID == "" {
							t.Errorf("ship %d: %v", i, err)
						}
						break
					}
					time.Sleep(200 * time.Millisecond)
				}
				cancel()
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return ids
}

// LandedInOrder checks, through the reporter's API at apiURL, what runs
// to one tag (target, promoted to env by the tag env names) left: every
// run promoted or superseded, none failed; the tag and env's record at
// the newest request's digest; and the history's previous-digest chain
// unbroken from the record back through every promotion. It returns how
// many runs were promoted and superseded.
func LandedInOrder(t testing.TB, apiURL, target, env string, ids []string) (promoted, superseded int) {
	t.Helper()
	var newest *runs.Run
	for _, id := range ids {
		r, ok := summary(t, apiURL, id)
		if !ok {
			continue
		}
		switch r.Status {
		case runs.Promoted:
			promoted++
		case runs.Superseded:
			superseded++
		default:
			t.Errorf("run %s ended %s (%s), want promoted or superseded: %+v", id, r.Status, r.Detail, r.Err)
		}
		if newest == nil || r.Started.After(newest.Started) || r.Started.Equal(newest.Started) && r.ID > newest.ID {
			newest = &r
		}
	}
	if newest == nil {
		t.Fatal("no run to check")
	}
	tag, err := name.NewTag(target)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	repo, err := registry.New(registry.WithKeychain(authn.NewMultiKeychain())).Open(ctx, tag.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	at, _, err := repo.HeadManifest(ctx, tag.TagStr())
	if err != nil {
		t.Fatal(err)
	}
	if at.Digest.String() != newest.Digest {
		t.Errorf("tag %s at %s, want the newest request's (run %s) %s", target, at.Digest, newest.ID, newest.Digest)
	}
	q := url.Values{"env": {env}, "repo": {tag.Context().Name()}}
	var recs api.Page[events.Promotion]
	if GetJSON(t, apiURL+"/v1/promotions?"+q.Encode(), &recs); len(recs.Items) != 1 || recs.Items[0].Digest != newest.Digest {
		t.Errorf("%s's record %+v, want the newest request's %s", env, recs.Items, newest.Digest)
	}
	held := history(t, apiURL, q)
	// From the record back: each promotion's previous digest is the one
	// before it, and every promotion the history holds is on the chain.
	seen := map[string]bool{}
	for d := newest.Digest; d != ""; {
		h, ok := held[d]
		if !ok || seen[d] {
			t.Errorf("the history's chain breaks at %s (in it: %t, seen twice: %t)", d, ok, seen[d])
			break
		}
		seen[d] = true
		d = h.PreviousDigest
	}
	if len(seen) != len(held) {
		var off []string
		for d := range held {
			if !seen[d] {
				off = append(off, d)
			}
		}
		slices.Sort(off)
		t.Errorf("%d promotions in the history are off the chain: %s", len(off), strings.Join(off, ", "))
	}
	return promoted, superseded
}

// summary is the run's summary once it has ended (the reporter files it
// as the run's last event arrives).
func summary(t testing.TB, apiURL, id string) (runs.Run, bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Until the run is filed the answer is an error: no summary yet.
		var r runs.Run
		code := GetJSON(t, apiURL+"/v1/runs/"+id+"/summary", &r)
		if code == http.StatusOK && r.Done() {
			return r, true
		}
		if time.Now().After(deadline) {
			t.Errorf("run %s: no summary of its end after 30 s (%d, %s)", id, code, r.Status)
			return r, false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// history reads every promotion of a query's history (promoted, or
// superseded after its tag moved), by digest.
func history(t testing.TB, apiURL string, q url.Values) map[string]events.Promotion {
	t.Helper()
	held := map[string]events.Promotion{}
	for {
		var page api.Page[api.HistoryEntry]
		if code := GetJSON(t, apiURL+"/v1/history?"+q.Encode(), &page); code != http.StatusOK {
			t.Fatalf("GET /v1/history: %d", code)
		}
		for _, h := range page.Items {
			if p := h.Promotion; p != nil {
				if _, dup := held[p.Digest]; dup {
					t.Errorf("%s is in the history twice", p.Digest)
				}
				held[p.Digest] = *p
			}
		}
		if page.Next == "" {
			return held
		}
		q.Set("cursor", page.Next)
	}
}
