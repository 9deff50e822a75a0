package index_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/index"
)

func open(t *testing.T) (*index.Index, context.Context) {
	t.Helper()
	xs, ctx := openReplicas(t, 1)
	return xs[0], ctx
}

// openReplicas opens n Indexes of one index stream, as n replicas of a
// service do.
func openReplicas(t *testing.T, n int) ([]*index.Index, context.Context) {
	t.Helper()
	srv := bustest.NewServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	xs := make([]*index.Index, n)
	for i := range xs {
		var err error
		if xs[i], err = index.Open(ctx, srv.JetStream); err != nil {
			t.Fatal(err)
		}
	}
	return xs, ctx
}

// pages reads list a page at a time and returns every entry's data.
func pages(t *testing.T, ctx context.Context, x *index.Index, list string, q index.Query) (all []string, n int) {
	t.Helper()
	for {
		p, err := x.Read(ctx, list, q)
		if err != nil {
			t.Fatal(err)
		}
		n++
		if len(p.Entries) > q.Limit {
			t.Fatalf("page of %d entries, limit %d", len(p.Entries), q.Limit)
		}
		for _, e := range p.Entries {
			all = append(all, string(e.Data))
		}
		if p.Next == 0 {
			return all, n
		}
		q.From = p.Next
	}
}

// TestListsReadNewestFirstAPageAtATime: entries come back newest first,
// in pages that follow each other without a gap or a repeat, from every
// list an entry was appended to; an append repeated (a redelivery) adds
// nothing; a cursor of one list is refused by another.
func TestListsReadNewestFirstAPageAtATime(t *testing.T) {
	x, ctx := open(t)
	all, even := index.List("t", "all"), index.List("t", "even")
	for i := range 25 {
		lists := []string{all}
		if i%2 == 0 {
			lists = append(lists, even)
		}
		for range 2 { // delivered twice
			if err := x.Append(ctx, "e"+strconv.Itoa(i), time.Now(), []byte(strconv.Itoa(i)), lists...); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, n := pages(t, ctx, x, all, index.Query{Limit: 10})
	if want := seq(24, 0, 1); fmt.Sprint(got) != fmt.Sprint(want) || n != 3 {
		t.Errorf("all in %d pages: %v, want %v", n, got, want)
	}
	got, _ = pages(t, ctx, x, even, index.Query{Limit: 4})
	if want := seq(24, 0, 2); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("even: %v, want %v", got, want)
	}
	p, err := x.Read(ctx, all, index.Query{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.Read(ctx, even, index.Query{From: p.Next, Limit: 1}); !errors.Is(err, index.ErrCursor) {
		t.Errorf("a cursor of another list: %v, want ErrCursor", err)
	}
	if p, err := x.Read(ctx, index.List("t", "none"), index.Query{Limit: 5}); err != nil || len(p.Entries) != 0 || p.Next != 0 {
		t.Errorf("an empty list: %+v, %v", p, err)
	}
}

// TestAQueryKeepsWhatItAsksForAndBoundsItsReads: Keep filters a page;
// a filter that keeps few entries reads at most Scan entries per page and
// says where to go on; Before starts at the entries appended before a
// time; Keep can end the list early.
func TestAQueryKeepsWhatItAsksForAndBoundsItsReads(t *testing.T) {
	x, ctx := open(t)
	list := index.List("t", "all")
	// An hour a entry, a year ago: the times are what happened, not when
	// they were appended.
	t0 := time.Now().AddDate(-1, 0, 0)
	mid := t0.Add(20 * time.Hour)
	for i := range 40 {
		if err := x.Append(ctx, strconv.Itoa(i), t0.Add(time.Duration(i)*time.Hour), []byte(strconv.Itoa(i)), list); err != nil {
			t.Fatal(err)
		}
	}
	tens := func(e index.Entry) (bool, bool) { n, _ := strconv.Atoi(string(e.Data)); return n%10 == 0, true }
	p, err := x.Read(ctx, list, index.Query{Limit: 5, Scan: 15, Keep: tens})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(data(p)) != "[30]" || p.Next == 0 {
		t.Errorf("a sparse filter's first page: %v (next %d), want [30] and more", data(p), p.Next)
	}
	got, _ := pages(t, ctx, x, list, index.Query{Limit: 5, Scan: 15, Keep: tens})
	if fmt.Sprint(got) != "[30 20 10 0]" {
		t.Errorf("a sparse filter through every page: %v", got)
	}
	for _, tc := range []struct {
		before time.Time
		want   []string
	}{
		{mid, seq(19, 0, 1)},
		{mid.Add(time.Nanosecond), seq(20, 0, 1)},
		{t0.Add(time.Hour), []string{"0"}},
		{t0, nil},
		{t0.Add(100 * time.Hour), seq(39, 0, 1)},
	} {
		if got, _ = pages(t, ctx, x, list, index.Query{Limit: 7, Before: tc.before}); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("before %s: %v, want %v", tc.before.Sub(t0), got, tc.want)
		}
	}
	above := func(e index.Entry) (bool, bool) { n, _ := strconv.Atoi(string(e.Data)); return n >= 35, n > 35 }
	got, _ = pages(t, ctx, x, list, index.Query{Limit: 3, Keep: above})
	if fmt.Sprint(got) != "[39 38 37 36 35]" {
		t.Errorf("a list ended by its filter: %v", got)
	}
}

// TestWritersAppendingAtOnceLoseNothing: replicas appending to one list
// at once are ordered by the server, and every entry is there once, also
// when each is appended twice (a redelivery) by a replica whose memory of
// the list's head another replica made stale.
func TestWritersAppendingAtOnceLoseNothing(t *testing.T) {
	// Two replicas' Indexes: each follows the heads it appended last,
	// which the other's appends make stale.
	xs, ctx := openReplicas(t, 2)
	x := xs[0]
	list := index.List("t", "all")
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			x := xs[w%2]
			for i := range 25 {
				id := fmt.Sprintf("%d-%d", w, i)
				// Each append twice, as a redelivered handler does.
				for range 2 {
					if err := x.Append(ctx, id, time.Now(), []byte(id), list, index.List("t", "w"+strconv.Itoa(w))); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	got, _ := pages(t, ctx, x, list, index.Query{Limit: 30})
	seen := map[string]bool{}
	for _, d := range got {
		if seen[d] {
			t.Errorf("%s twice", d)
		}
		seen[d] = true
	}
	if len(seen) != 100 {
		t.Errorf("%d entries, want 100", len(seen))
	}
	if mine, _ := pages(t, ctx, x, index.List("t", "w2"), index.Query{Limit: 30}); len(mine) != 25 || mine[0] != "2-24" {
		t.Errorf("one writer's list: %d entries from %v", len(mine), mine[:min(len(mine), 1)])
	}
}

// TestAnIndexOpenedLaterFollowsTheListsThere: a replica started after
// lists were filled (a restart, a new instance) appends after their
// newest entries, not as if they were new, and an append it repeats (a
// redelivery the earlier instance had handled) adds nothing.
func TestAnIndexOpenedLaterFollowsTheListsThere(t *testing.T) {
	xs, ctx := openReplicas(t, 2)
	before, later := xs[0], xs[1]
	list, other := index.List("t", "all"), index.List("t", "other")
	for _, id := range []string{"a", "b"} {
		if err := before.Append(ctx, id, time.Now(), []byte(id), list, other); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"b", "c", "d"} {
		if err := later.Append(ctx, id, time.Now(), []byte(id), list, other); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []string{list, other} {
		if got, _ := pages(t, ctx, later, l, index.Query{Limit: 2}); fmt.Sprint(got) != "[d c b a]" {
			t.Errorf("%s: %v, want [d c b a]", l, got)
		}
	}
}

// TestAnEntryWhoseDataIsGoneIsSkipped: a list's reference to an entry
// past retention (its message deleted) is left out of the page, and the
// entries around it stay.
func TestAnEntryWhoseDataIsGoneIsSkipped(t *testing.T) {
	srv := bustest.NewServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	x, err := index.Open(ctx, srv.JetStream)
	if err != nil {
		t.Fatal(err)
	}
	all, refs := index.List("t", "all"), index.List("t", "refs")
	for i := range 3 {
		if err := x.Append(ctx, strconv.Itoa(i), time.Now(), []byte(strconv.Itoa(i)), all, refs); err != nil {
			t.Fatal(err)
		}
	}
	p, err := x.Read(ctx, all, index.Query{Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	s, err := srv.JetStream.Stream(ctx, events.IndexStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(ctx, p.Entries[1].Seq); err != nil { // "1", as retention would
		t.Fatal(err)
	}
	if got, _ := pages(t, ctx, x, refs, index.Query{Limit: 3}); fmt.Sprint(got) != "[2 0]" {
		t.Errorf("references with one entry gone: %v, want [2 0]", got)
	}
}

func data(p index.Page) []string {
	var out []string
	for _, e := range p.Entries {
		out = append(out, string(e.Data))
	}
	return out
}

// seq is from, from-step, … down to to, as strings.
func seq(from, to, step int) []string {
	var out []string
	for i := from; i >= to; i -= step {
		out = append(out, strconv.Itoa(i))
	}
	return out
}
