package reporter

import (
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/digestline/digestline/pkg/events"
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

// RunSummary is one run as the page and GET /v1/runs show it: what it
// targets, how it ended (or that it is still going) and its timeline.
type RunSummary struct {
	RunID   string    `json:"runId"`
	Target  string    `json:"target"`
	Status  string    `json:"status"` // running, promoted, rejected, failed
	Detail  string    `json:"detail,omitempty"`
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
	Steps   []RunStep `json:"steps"`
	Total   int64     `json:"totalMs"`
	events  []runEvent
}

// RunStep is one bar of a run's timeline: a push stage, or the build,
// verify or promotion step, with how long it took and how it ended.
type RunStep struct {
	Name       string `json:"name"`
	Status     string `json:"status"` // ok, skipped, retrying, failed
	StartMs    int64  `json:"startMs"`
	DurationMs int64  `json:"durationMs"`
	Hint       string `json:"hint,omitempty"`
}

// runEvent is an event of a run, in stream order.
type runEvent struct {
	name events.Name
	at   time.Time
	data []byte
}

// recentRuns reads the last events of the stream (scan of them at most) and
// summarizes the runs they belong to, most recently active first.
func (r *reporter) recentRuns(ctx context.Context, limit, scan int) ([]RunSummary, error) {
	s, err := r.cfg.JetStream.Stream(ctx, events.StreamName)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	runs := map[string]*RunSummary{}
	var order []string
	first := info.State.FirstSeq
	if info.State.LastSeq > uint64(scan) {
		first = max(first, info.State.LastSeq-uint64(scan)+1)
	}
	add := func(data []byte) {
		ev, name, err := events.Parse(data)
		if err != nil {
			return
		}
		id := events.RunID(ev)
		run := runs[id]
		if run == nil {
			run = &RunSummary{RunID: id, Status: "running", Started: ev.Time()}
			runs[id] = run
			order = append(order, id)
		}
		run.Updated = ev.Time()
		run.events = append(run.events, runEvent{name: name, at: ev.Time(), data: ev.Data()})
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
					add(m.Data())
				}
			}
			if err := batch.Error(); err != nil {
				return nil, err
			}
			done = done || n == 0
		}
	}
	slices.SortStableFunc(order, func(a, b string) int { return runs[b].Updated.Compare(runs[a].Updated) })
	out := []RunSummary{}
	for _, id := range order[:min(limit, len(order))] {
		out = append(out, summarize(*runs[id]))
	}
	return out, nil
}

// summarize turns a run's events into its status and timeline bars.
func summarize(run RunSummary) RunSummary {
	prev := run.Started
	step := func(name, status string, at time.Time, dur time.Duration, hint string) {
		start := at.Add(-dur)
		if dur == 0 { // a step without its own duration lasted since the previous event
			start = prev
		}
		run.Steps = append(run.Steps, RunStep{Name: name, Status: status, StartMs: start.Sub(run.Started).Milliseconds(),
			DurationMs: max(at.Sub(start).Milliseconds(), 1), Hint: hint})
		prev = at
	}
	for _, e := range run.events {
		switch e.name {
		case events.BuildRequested:
			if req, err := decodeData[events.BuildRequest](e.data); err == nil {
				run.Target = req.Target
			}
		case events.BuildCompleted:
			step("build", "ok", e.at, 0, "")
		case events.PushStage:
			if s, err := decodeData[events.StageReport](e.data); err == nil {
				hint := ""
				if s.Error != nil {
					hint = s.Error.Class + ": " + s.Error.Message + " — " + s.Error.Hint
				}
				step(s.Stage, s.Status, e.at, time.Duration(s.DurationMS)*time.Millisecond, hint)
			}
		case events.VerifyCompleted:
			step("verify", "ok", e.at, 0, "")
		case events.PromotionApproved:
			step("gates", "ok", e.at, 0, "")
		case events.Promoted:
			step("promote", "ok", e.at, 0, "")
			if p, err := decodeData[events.Promotion](e.data); err == nil {
				run.Status, run.Detail = "promoted", p.Environment+" "+p.Repository+"@"+p.Digest
			}
		case events.BuildFailed, events.PushFailed, events.VerifyFailed:
			if f, err := decodeData[events.Failure](e.data); err == nil {
				run.Status = "failed"
				if e.name != events.PushFailed { // the push's failing stage has its bar and hint already
					run.Detail = string(e.name) + ": " + f.Class + " at " + cmp.Or(f.Path, f.Stage)
					step(cmp.Or(f.Stage, string(e.name)), "failed", e.at, 0, f.Hint)
				}
			}
		case events.PromotionRejected:
			if rj, err := decodeData[events.Rejection](e.data); err == nil {
				run.Status, run.Detail = "rejected", "gate "+rj.Gate+": "+rj.Reason
				step("gates", "failed", e.at, 0, rj.Reason)
			}
		}
	}
	run.Total = max(run.Updated.Sub(run.Started).Milliseconds(), 1)
	return run
}

func decodeData[T any](b []byte) (T, error) {
	var v T
	err := json.Unmarshal(b, &v)
	return v, err
}

// pageData is what the page shows.
type pageData struct {
	Runs       []RunSummary
	Promotions []events.Promotion
	History    []HistoryEntry
	Chain      []string
	Now        time.Time
}

// servePage renders the page: recent runs with their stage timelines,
// current promotions and the promotion history. It reloads itself every
// few seconds (a meta refresh: no JavaScript, no build chain).
func (r *reporter) servePage(w http.ResponseWriter, req *http.Request) {
	ctx := req.Context()
	runs, err := r.recentRuns(ctx, 20, 2000)
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
	if err := page.Execute(w, pageData{Runs: runs, Promotions: recs, History: hist[:min(len(hist), 30)], Chain: r.cfg.Environments, Now: time.Now()}); err != nil {
		r.cfg.Log().Warn("render the page", "error", err)
	}
}
