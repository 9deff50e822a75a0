package reporter

import (
	"context"
	"embed"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/nats-io/nats.go/jetstream"
)

//go:embed page.html
var pageFS embed.FS

var page = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"short": func(d string) string {
		if len(d) > 19 {
			return d[:19]
		}
		return d
	},
	"ago": func(t time.Time) string { return time.Since(t).Round(time.Second).String() + " ago" },
	"pct": func(part, whole int64) string {
		if whole <= 0 {
			return "0"
		}
		return strconv.FormatFloat(max(float64(part)*100/float64(whole), 0.5), 'f', 1, 64)
	},
}).ParseFS(pageFS, "page.html"))

// recentRuns reads the last events of the stream (scan of them at most) and
// summarizes the runs they belong to, most recently active first.
func (r *reporter) recentRuns(ctx context.Context, limit, scan int) ([]*runs.Run, error) {
	s, err := r.cfg.JetStream.Stream(ctx, events.StreamName)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	byID := map[string]*runs.Run{}
	var order []string
	first := info.State.FirstSeq
	if info.State.LastSeq > uint64(scan) {
		first = max(first, info.State.LastSeq-uint64(scan)+1)
	}
	add := func(subject string, data []byte) {
		ev, name, err := events.ParseMsg(subject, data)
		if err != nil {
			return // dead-lettered by its consumer: not part of the run
		}
		id := events.RunID(ev)
		run := byID[id]
		if run == nil {
			run = &runs.Run{}
			byID[id] = run
			order = append(order, id)
		}
		run.Add(ev, name)
	}
	if info.State.Msgs > 0 {
		// One ordered consumer reads the tail in batches: a request per few
		// hundred events, not one per event.
		cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: first})
		if err != nil {
			return nil, err
		}
		for done := false; !done; {
			batch, err := cons.FetchNoWait(500)
			if err != nil {
				return nil, err
			}
			n := 0
			for m := range batch.Messages() {
				n++
				meta, err := m.Metadata()
				if err != nil {
					continue
				}
				if meta.Sequence.Stream >= info.State.LastSeq {
					done = true // events published since the page was asked for wait for the next one
				}
				if meta.Sequence.Stream <= info.State.LastSeq {
					add(m.Subject(), m.Data())
				}
			}
			if err := batch.Error(); err != nil {
				return nil, err
			}
			done = done || n == 0
		}
	}
	slices.SortStableFunc(order, func(a, b string) int { return byID[b].Updated.Compare(byID[a].Updated) })
	out := []*runs.Run{}
	for _, id := range order[:min(limit, len(order))] {
		out = append(out, byID[id])
	}
	return out, nil
}

// pageData is what the page shows.
type pageData struct {
	Runs       []*runs.Run
	Promotions []events.Promotion
	History    []api.HistoryEntry
	Chain      []string
	Now        time.Time
}

// servePage renders the page: recent runs with their stage timelines,
// current promotions and the promotion history. It reloads itself every
// few seconds (a meta refresh: no JavaScript, no build chain).
func (r *reporter) servePage(w http.ResponseWriter, req *http.Request) {
	ctx := req.Context()
	recent, err := r.recentRuns(ctx, 20, 2000)
	if err != nil {
		http.Error(w, "read runs: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	recs, err := r.store.list(ctx, "", "")
	if err != nil {
		http.Error(w, "read promotions: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	hist, err := r.store.listHistory(ctx, "", "")
	if err != nil {
		http.Error(w, "read history: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	slices.Reverse(hist)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := page.Execute(w, pageData{Runs: recent, Promotions: recs, History: hist[:min(len(hist), 30)], Chain: r.cfg.Environments, Now: time.Now()}); err != nil {
		r.cfg.Log().Warn("render the page", "error", err)
	}
}
