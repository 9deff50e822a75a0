package reporter

import (
	"bytes"
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/digestline/digestline/pkg/service"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// The reporter's pages: server-rendered HTML, no JavaScript, one layout
// (pages/layout.html) around each page's content. Every run, environment
// and digest on a page links to its own page.
//
//go:embed pages/*.html
var pagesFS embed.FS

var pageFuncs = template.FuncMap{
	"short":   runs.ShortDigest,
	"shortID": runs.ShortID,
	"runsOf": func(target string) string { // the runs page of the target's repository
		if repo := runRepository(target); repo != "" {
			return runsHref(api.RunQuery{Repo: repo})
		}
		return ""
	},
	"ago": func(t time.Time) string { return time.Since(t).Round(time.Second).String() + " ago" },
	"ms":  func(ms int64) string { return (time.Duration(ms) * time.Millisecond).String() },
	"pct": func(part, whole int64) string {
		if whole <= 0 {
			return "0"
		}
		return strconv.FormatFloat(max(float64(part)*100/float64(whole), 0.5), 'f', 1, 64)
	},
	// failedStep is the step a run failed at (nil when none did): the one
	// line that says why, with its hint.
	"failedStep": func(r *runs.Run) *runs.Step {
		for i := len(r.Steps) - 1; i >= 0; i-- {
			if r.Steps[i].Status == events.StatusFailed {
				return &r.Steps[i]
			}
		}
		return nil
	},
	// stalled is what a running run quiet for stallAfter waits for (""
	// otherwise); its own page says whether that runs.
	"stalled": func(r *runs.Run) string {
		if service := stalled(r); service != "" {
			return "waits for the " + service
		}
		return ""
	},
	"retries": func(r *runs.Run) string {
		n := 0
		for _, s := range r.Steps {
			if s.Status == events.StatusRetrying {
				n++
			}
		}
		if n == 0 {
			return ""
		}
		return fmt.Sprintf("%d retried", n)
	},
}

// pages are the views by name, each parsed with the layout.
var pages = func() map[string]*template.Template {
	layout := template.Must(template.New("layout.html").Funcs(pageFuncs).ParseFS(pagesFS, "pages/layout.html"))
	out := map[string]*template.Template{}
	for _, page := range []string{"index", "runs", "run", "env", "digest", "error"} {
		out[page] = template.Must(template.Must(layout.Clone()).ParseFS(pagesFS, "pages/"+page+".html"))
	}
	return out
}()

// page is what every page has: the chain (the header's links) and how
// often it reloads itself (0: never).
type page struct {
	Chain   []string
	Refresh int
}

// render writes a page, or a 500 when its template fails (nothing half
// written); renderStatus answers with status instead of 200.
func (r *reporter) render(w http.ResponseWriter, view string, data any) {
	r.renderStatus(w, http.StatusOK, view, data)
}

func (r *reporter) renderStatus(w http.ResponseWriter, status int, view string, data any) {
	var buf bytes.Buffer
	if err := pages[view].ExecuteTemplate(&buf, "layout.html", data); err != nil {
		r.cfg.Log().Warn("render a page", "page", view, "error", err)
		http.Error(w, "render the page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// pageError answers a page that cannot be shown with one that says why,
// in the layout, so that its links lead on (a link from a chat to a run
// past every retention, a mistyped address).
func (r *reporter) pageError(w http.ResponseWriter, status int, msg string) {
	r.renderStatus(w, status, "error", struct {
		page
		StatusText, Message string
	}{page{Chain: r.cfg.Environments}, http.StatusText(status), msg})
}

// servePage renders the front page: recent runs with their steps, what is
// promoted now and the latest history. It reloads itself every few
// seconds (a meta refresh: no JavaScript).
func (r *reporter) servePage(w http.ResponseWriter, req *http.Request) {
	ctx := req.Context()
	recent, err := r.runs.recent(ctx, 20)
	if err != nil {
		r.pageError(w, http.StatusServiceUnavailable, "read runs: "+err.Error())
		return
	}
	recs, _, err := r.store.list(ctx, "", "", "", frontPageRecords)
	if err != nil {
		r.pageError(w, http.StatusServiceUnavailable, "read promotions: "+err.Error())
		return
	}
	hist, err := r.store.historyPage(ctx, api.HistoryQuery{ListQuery: api.ListQuery{Limit: 30}})
	if err != nil {
		r.pageError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	r.render(w, "index", struct {
		page
		Runs       []*runs.Run
		Promotions []events.Promotion
		History    []api.HistoryEntry
	}{page{r.cfg.Environments, 3}, recent, recs, hist.Items})
}

// runsPage is how many runs the runs page shows at once.
const runsPage = 25

// serveRuns renders GET /runs: the runs, newest first, a page at a time,
// with GET /v1/runs's filters (?status=, ?repo=, ?digest=, ?commit=,
// ?since=, ?until=, ?cursor=) and a link to each status.
func (r *reporter) serveRuns(w http.ResponseWriter, req *http.Request) {
	q, err := api.ParseRunQuery(req.URL.Query())
	if err != nil {
		r.pageError(w, http.StatusBadRequest, err.Error())
		return
	}
	q.Limit = runsPage
	found, err := r.runs.page(req.Context(), q)
	switch {
	case errors.Is(err, errBadQuery):
		r.pageError(w, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		r.pageError(w, http.StatusServiceUnavailable, "read runs: "+err.Error())
		return
	}
	type filter struct {
		Name, Href string
		On         bool
	}
	data := struct {
		page
		api.RunQuery
		Runs                                []*runs.Run
		Filters                             []filter
		Newest, Older, AllRepos, AllCommits string
		// BuiltNothing says why pushes of the commit built nothing.
		BuiltNothing []string
	}{page: page{Chain: r.cfg.Environments}, RunQuery: q, Runs: found.Items}
	if q.Commit != "" && q.Cursor == "" {
		if data.BuiltNothing, err = r.builtNothing(req.Context(), q.Commit); err != nil {
			r.pageError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
	}
	if q.Cursor == "" {
		data.Refresh = 3 // the newest page, as the front page, follows runs as they go
	}
	for _, status := range append([]string{""}, api.RunStatuses...) {
		f := q
		f.Status, f.Cursor = status, ""
		data.Filters = append(data.Filters, filter{Name: cmp.Or(status, "all"), Href: runsHref(f), On: status == q.Status})
	}
	if q.Cursor != "" {
		newest := q
		newest.Cursor = ""
		data.Newest = runsHref(newest)
	}
	if found.Next != "" {
		older := q
		older.Cursor = found.Next
		data.Older = runsHref(older)
	}
	every := q
	every.Repo, every.Cursor = "", ""
	data.AllRepos = runsHref(every)
	every = q
	every.Commit, every.Cursor = "", ""
	data.AllCommits = runsHref(every)
	r.render(w, "runs", data)
}

// builtNothing is why the webhooks' deliveries of commit built nothing,
// as the builder recorded them (GET /v1/pushes/{commit}).
func (r *reporter) builtNothing(ctx context.Context, commit string) ([]string, error) {
	var p api.Push
	if _, _, err := getJSON(ctx, r.store.pushes, commit, &p); err != nil {
		return nil, fmt.Errorf("read the pushes of commit %s: %w", commit, err)
	}
	return p.Ignored, nil
}

// runsHref is the runs page's address for q (its page size is the page's).
func runsHref(q api.RunQuery) string {
	q.Limit = 0
	if v := q.Values(); len(v) > 0 {
		return "/runs?" + v.Encode()
	}
	return "/runs"
}

// runEvent is one of a run's events as its page lists it.
type runEvent struct {
	AfterMS int64
	Name    events.Name
	Lines   []string
}

// serveRun renders GET /runs/{runid} (any unique prefix of the id): the
// run's facts, its trace link, its steps with hints, the evidence attached
// to its digest and its events. A running run's page reloads itself.
func (r *reporter) serveRun(w http.ResponseWriter, req *http.Request) {
	id, raw, status, err := r.runEvents(req.Context(), req.PathValue("runid"))
	if status == http.StatusNotFound {
		r.serveRunSummary(w, req, id, err)
		return
	}
	if err != nil {
		r.pageError(w, status, err.Error())
		return
	}
	if id != req.PathValue("runid") { // a prefix: the run's own address
		http.Redirect(w, req, "/runs/"+id, http.StatusFound)
		return
	}
	run, evs := &runs.Run{}, []runEvent{}
	for _, b := range raw {
		ev, n, err := events.Parse(b)
		if err != nil {
			continue
		}
		lines := run.Add(ev, n)
		evs = append(evs, runEvent{AfterMS: ev.Time().Sub(run.Started).Milliseconds(), Name: n, Lines: lines})
	}
	r.renderRun(w, req, run, evs, "")
}

// serveRunSummary renders the page of a run whose events are past the
// stream's retention from its stored summary, or says why there is none.
// found is the run's whole id when runEvents found the run ("" when not):
// named by a prefix, the page sends to the run's own address.
func (r *reporter) serveRunSummary(w http.ResponseWriter, req *http.Request, found string, notFound error) {
	id := req.PathValue("runid")
	if found != "" && found != id {
		http.Redirect(w, req, "/runs/"+found, http.StatusFound)
		return
	}
	run, err := r.runs.summary(req.Context(), id)
	if errors.Is(err, runs.ErrNoRun) {
		r.pageError(w, http.StatusNotFound, notFound.Error())
		return
	}
	if err != nil {
		r.pageError(w, http.StatusServiceUnavailable, "read run: "+err.Error())
		return
	}
	r.renderRun(w, req, run, nil, "Its events are past the stream's retention (DIGESTLINE_EVENTS_MAX_AGE): this summary is what is kept of it.")
}

// renderRun renders a run's page: its facts, trace link, steps, evidence
// and events (eventsNote, when they are gone).
func (r *reporter) renderRun(w http.ResponseWriter, req *http.Request, run *runs.Run, evs []runEvent, eventsNote string) {
	data := struct {
		page
		Run           *runs.Run
		TraceURL      string
		Events        []runEvent
		EventsNote    string
		Referrers     []v1.Descriptor
		ReferrersNote string
	}{page: page{Chain: r.cfg.Environments}, Run: run, Events: evs, EventsNote: eventsNote}
	if !run.Done() {
		data.Refresh = 2
		r.noteWaiting(req.Context(), run)
	}
	if run.TraceID != "" && r.cfg.TraceURL != "" {
		data.TraceURL = strings.ReplaceAll(r.cfg.TraceURL, "{traceId}", run.TraceID)
	}
	switch {
	case run.Digest == "":
		data.ReferrersNote = "The run built nothing yet."
	case run.Err != nil && run.Err.Event == events.PushFailed:
		data.ReferrersNote = "The push did not complete: nothing is attached in the registry."
	case run.Promotion != nil:
		data.Referrers, data.ReferrersNote = r.referrersOf(req.Context(), run.Promotion.Place(), run.Digest)
	default:
		data.Referrers, data.ReferrersNote = r.referrersOf(req.Context(), run.Target, run.Digest)
	}
	r.render(w, "run", data)
}

// stallAfter is how long a running run may go without an event before its
// page asks whether the service it waits for runs.
const stallAfter = 15 * time.Second

// noteWaiting says in run.Waiting why a running run that has had no event
// for stallAfter waits, when the service it waits for (runs.Run.WaitsFor)
// is not running (bus.ConsumerLiveness); nothing otherwise, or when the
// bus cannot say within a few seconds.
func (r *reporter) noteWaiting(ctx context.Context, run *runs.Run) {
	service := stalled(run)
	if service == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if live, err := bus.ConsumerLiveness(ctx, r.cfg.JetStream, service); err == nil {
		run.Waiting = live.Note(service)
	}
}

// stalled is the service a running run that has had no event for
// stallAfter waits for (runs.Run.WaitsFor); "" for a run that is not.
func stalled(run *runs.Run) string {
	if run.Done() || time.Since(run.Updated) < stallAfter {
		return ""
	}
	return run.WaitsFor
}

// referrersOf lists what is attached to d in ref's repository (the
// signature, SBOMs, provenance, verification summary), or says why it
// cannot: a page shows what it can, in a few seconds at most.
func (r *reporter) referrersOf(ctx context.Context, ref, d string) ([]v1.Descriptor, string) {
	parsed, err := name.ParseReference(ref) // repository, repository:tag or repository@digest
	if err != nil {
		return nil, "No repository to read its referrers from."
	}
	repo := parsed.Context()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	reg, err := r.Registry.Open(ctx, repo, false)
	if err != nil {
		return nil, "The referrers cannot be read now: " + err.Error()
	}
	refs, err := reg.Referrers(ctx, digest.Digest(d))
	if err != nil {
		return nil, "The referrers cannot be read now: " + err.Error()
	}
	if len(refs) == 0 {
		return nil, "No signature, SBOM, provenance or verification summary is attached."
	}
	return refs, ""
}

// frontPageRecords is how many current records the front page shows (the
// environments' pages show all of theirs).
const frontPageRecords = 100

// historyPage is how many entries an environment's page shows at once.
const historyPage = 25

// serveEnv renders GET /envs/{env}: what the environment holds now, per
// repository, and its history, newest first, a page at a time
// (?cursor=, the API's cursor).
func (r *reporter) serveEnv(w http.ResponseWriter, req *http.Request) {
	env := req.PathValue("env")
	if !slices.Contains(r.cfg.Environments, env) {
		r.pageError(w, http.StatusNotFound, fmt.Sprintf("%q is not in the promotion chain %s", env, strings.Join(r.cfg.Environments, " → ")))
		return
	}
	cur, _, err := r.store.list(req.Context(), env, "", "", 0)
	if err != nil {
		r.pageError(w, http.StatusServiceUnavailable, "read promotions: "+err.Error())
		return
	}
	cursor := req.URL.Query().Get("cursor")
	hist, err := r.store.historyPage(req.Context(), api.HistoryQuery{ListQuery: api.ListQuery{Cursor: cursor, Limit: historyPage}, Env: env})
	if errors.Is(err, errBadQuery) {
		r.pageError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err != nil {
		r.pageError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	frozen, err := r.frozen(req.Context(), env, time.Now())
	if err != nil {
		r.pageError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	pins, err := r.store.pins(req.Context())
	if err != nil {
		r.pageError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	pins = slices.DeleteFunc(pins, func(p api.Pin) bool { return p.Environment != env })
	data := struct {
		page
		Env           string
		Frozen        *api.Freeze
		Pins          []api.Pin
		Current       []events.Promotion
		History       []api.HistoryEntry
		Newest, Older string
	}{page: page{Chain: r.cfg.Environments}, Env: env, Frozen: frozen, Pins: pins, Current: cur, History: hist.Items}
	if cursor != "" {
		data.Newest = "/envs/" + env
	}
	if hist.Next != "" {
		data.Older = "/envs/" + env + "?cursor=" + hist.Next
	}
	r.render(w, "env", data)
}

// serveDigest renders GET /digests/{digest}: where the digest is and was,
// the runs that made and moved it, and what is attached to it.
func (r *reporter) serveDigest(w http.ResponseWriter, req *http.Request) {
	rep, recent, status, err := r.digestReport(req.Context(), req.PathValue("digest"))
	if err != nil {
		r.pageError(w, status, err.Error())
		return
	}
	data := struct {
		page
		Report        api.DigestReport
		Runs          []*runs.Run
		Referrers     []v1.Descriptor
		ReferrersNote string
	}{page: page{Chain: r.cfg.Environments}, Report: rep, Runs: recent}
	repo := ""
	switch {
	case len(rep.Current) > 0:
		repo = rep.Current[0].Place()
	case len(recent) > 0:
		repo = recent[0].Target
	case len(rep.Held) > 0:
		repo = rep.Held[0].Repository
	}
	data.ReferrersNote = "No repository is known to hold it."
	if repo != "" {
		data.Referrers, data.ReferrersNote = r.referrersOf(req.Context(), repo, rep.Digest)
	}
	r.render(w, "digest", data)
}

// getDigest answers GET /v1/digests/{digest}: where the digest is promoted
// now, where it was until when, and the runs that made and moved it.
func (r *reporter) getDigest(w http.ResponseWriter, req *http.Request) {
	rep, _, status, err := r.digestReport(req.Context(), req.PathValue("digest"))
	if err != nil {
		service.WriteError(w, status, err.Error())
		return
	}
	service.WriteJSON(w, http.StatusOK, rep)
}

// maxDigestMoves bounds the history one digest's view folds.
const maxDigestMoves = 2000

// digestReport gathers what is known of d from its own lists, whatever
// the history's length: the times environments held it (from its history:
// until a promotion moved the environment off it), the records that hold
// it now, and the runs that promoted it or ended after building or
// pushing it.
func (r *reporter) digestReport(ctx context.Context, d string) (api.DigestReport, []*runs.Run, int, error) {
	if _, err := digest.Parse(d); err != nil {
		return api.DigestReport{}, nil, http.StatusBadRequest, fmt.Errorf("digest %q: want sha256:<64 hex digits>", d)
	}
	rep := api.DigestReport{Digest: d, Current: []events.Promotion{}, Held: []api.Holding{}, Runs: []string{}}
	// The digest's own list: the promotions that brought it to an
	// environment, and the ones that moved the environment off it.
	hist, err := r.store.allHistory(ctx, api.HistoryQuery{Digest: d}, maxDigestMoves)
	if err != nil {
		return rep, nil, http.StatusServiceUnavailable, err
	}
	open := map[[2]string]int{} // environment and repository → its open holding of d
	for _, h := range hist {
		if h.Deletion != nil && h.Deletion.Digest == d {
			rep.Deleted = append(rep.Deleted, *h.Deletion)
		}
		p := h.Promotion // promoted, or superseded: it held the tag too
		if p == nil {
			continue
		}
		key := [2]string{p.Environment, p.Repository}
		if i, ok := open[key]; ok && p.PreviousDigest == d {
			at := h.At
			rep.Held[i].Until = &at
			delete(open, key)
		}
		if p.Digest == d {
			rep.Held = append(rep.Held, api.Holding{Environment: p.Environment, Repository: p.Repository, From: h.At, RunID: h.RunID})
			open[key] = len(rep.Held) - 1
			rep.Runs = append(rep.Runs, h.RunID)
		}
	}
	// What holds it now: the records of the places its history left it in.
	for _, place := range slices.SortedFunc(maps.Keys(open), cmpPlace) {
		cur, found, err := r.store.current(ctx, place[0], place[1])
		if err != nil {
			return rep, nil, http.StatusServiceUnavailable, fmt.Errorf("read promotions: %w", err)
		}
		if found && cur.Digest == d {
			rep.Current = append(rep.Current, cur)
		}
	}
	made, err := r.runs.page(ctx, api.RunQuery{ListQuery: api.ListQuery{Limit: api.DefaultLimit}, Digest: d})
	if err != nil {
		return rep, nil, http.StatusServiceUnavailable, err
	}
	recent := made.Items
	for _, run := range recent {
		if !slices.Contains(rep.Runs, run.ID) {
			rep.Runs = append(rep.Runs, run.ID)
		}
	}
	if len(rep.Current) == 0 && len(rep.Held) == 0 && len(recent) == 0 && len(rep.Deleted) == 0 {
		return rep, nil, http.StatusNotFound, fmt.Errorf("no recent run built %s and no environment held it", d)
	}
	return rep, recent, http.StatusOK, nil
}
