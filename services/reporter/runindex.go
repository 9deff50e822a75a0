package reporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/index"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/nats-io/nats.go/jetstream"
)

// The run read model: each run's summary in the runs bucket, from its
// first event (running) and again when it ends (folded from its events),
// and its place in the index's lists — every run by when it started (and
// by the start of its id: runids.go); by commit, from its start under
// the object its push named in full and, once built, under the commit it
// checked out when that differs (it is listed while it runs); and, once
// it ended, by its status, its digest and its repository, by when it
// ended.
// GET /v1/runs and the pages read a page of a list and a summary per run,
// so they cost a page at any history; and a run whose events are past the
// stream's retention still has its summary.
var runsAll = index.List("runs", "all")

// runStarts are the events a run starts with; runEnds those it ends with.
var (
	runStarts = events.RunStarts
	runEnds   = []events.Name{events.Promoted, events.Superseded, events.PromotionRejected, events.BuildFailed, events.PushFailed, events.VerifyFailed}
)

// runIndexer keeps the run read model; its own durable consumer reads the
// events runs start and end with, one at a time, so that one reporter
// files runs in the order they started and ended (replicas interleave
// theirs: the lists are then in that order within moments).
type runIndexer struct {
	js    jetstream.JetStream
	kv    jetstream.KeyValue
	index *index.Index
	// onStart and onEnd hear of each run's start and end first (queue.go:
	// the queues of environments that take every digest in turn).
	onStart, onEnd func(context.Context, bus.Message) error
}

func openRunIndexer(ctx context.Context, js jetstream.JetStream, x *index.Index) (*runIndexer, error) {
	kv, err := js.KeyValue(ctx, events.RunsBucket)
	if err != nil {
		return nil, fmt.Errorf("open %s (is the bus provisioned?): %w", events.RunsBucket, err)
	}
	none := func(context.Context, bus.Message) error { return nil }
	return &runIndexer{js: js, kv: kv, index: x, onStart: none, onEnd: none}, nil
}

// router routes the starts and ends of runs to the indexer.
func (ri *runIndexer) router(b *bus.Bus) *bus.Router {
	router := b.Router(bus.ConsumerSpec{Durable: "reporter-run-index", Concurrency: 1})
	for _, n := range runStarts {
		router.Handle(n, ri.started)
	}
	for _, n := range runEnds {
		router.Handle(n, ri.ended)
	}
	router.Handle(events.BuildCompleted, bus.Data(ri.built))
	return router
}

// started files a new run: its summary (running, its target) and its
// entry in the list of every run. A redelivery, or the start of a run
// filed already, files nothing.
func (ri *runIndexer) started(ctx context.Context, m bus.Message) error {
	if err := ri.onStart(ctx, m); err != nil {
		return err
	}
	run := &runs.Run{}
	run.Add(m.Event, m.Name)
	seen, err := ri.stored(ctx, run.ID)
	if err != nil || seen.found {
		return err
	}
	if err := ri.fileStart(ctx, run); err != nil {
		return err
	}
	return ri.put(ctx, run, seen, func(cur *runs.Run) bool { return cur == nil })
}

// fileStart files a run in the list of every run, by when it started, in
// its id's list (idList) and, when it names one, in its commit's list.
func (ri *runIndexer) fileStart(ctx context.Context, run *runs.Run) error {
	lists := []string{runsAll, idList(run.ID)}
	if run.Commit != "" {
		lists = append(lists, commitList(run.Commit))
	}
	if err := ri.index.Append(ctx, run.ID, run.Started, []byte(run.ID), lists...); err != nil {
		return fmt.Errorf("file run %s: %w", run.ID, err)
	}
	return nil
}

// built files a run in the list of the commit its build checked out,
// unless it was filed there as it started (its push named that commit):
// an annotated tag's push that named the tag object (Bitbucket Data
// Center, Azure DevOps) has its runs listed by their commit too, while
// they push. A redelivery files nothing (Append by the run's id).
func (ri *runIndexer) built(ctx context.Context, m bus.Message, b builtCommit) error {
	if !events.IsCommitID(b.Commit) {
		return nil
	}
	id := events.RunID(m.Event)
	seen, err := ri.stored(ctx, id)
	if err != nil || seen.found && seen.run.Commit == b.Commit {
		return err
	}
	if err := ri.index.Append(ctx, id, m.Event.Time(), []byte(id), commitList(b.Commit)); err != nil {
		return fmt.Errorf("file run %s: %w", id, err)
	}
	return nil
}

// builtCommit is what built reads of build.completed: not its graph.
type builtCommit struct {
	Commit string `json:"commit"`
}

// ended stores the summary the run's events fold into and files it by
// status, digest and repository (and by commit, for a build that failed
// after a checkout its start did not name: started and built filed the
// others). A redelivery finds it filed.
func (ri *runIndexer) ended(ctx context.Context, m bus.Message) error {
	if err := ri.onEnd(ctx, m); err != nil {
		return err
	}
	id := events.RunID(m.Event)
	seen, err := ri.stored(ctx, id)
	if err != nil {
		return err
	}
	if seen.found && seen.run.Done() {
		return nil
	}
	run, err := runs.FoldThrough(ctx, ri.js, id, m.Event.ID())
	if err != nil {
		return err
	}
	if !run.Done() {
		return nil // an end the stream holds no more (past retention): nothing to fold
	}
	commitFiled := seen.found && seen.run.Commit == run.Commit // as it started
	if !seen.found {
		// Its start is not filed yet (another replica's, or a consumer
		// that fell behind): file it here, which its start then finds.
		if err := ri.fileStart(ctx, run); err != nil {
			return err
		}
		commitFiled = true
	}
	lists := runEndLists(run)
	if m.Name == events.BuildFailed && !commitFiled && events.IsCommitID(run.Commit) {
		lists = append(lists, commitList(run.Commit)) // checked out, then failed: no build.completed filed it
	}
	if err := ri.index.Append(ctx, run.ID, run.Updated, []byte(run.ID), lists...); err != nil {
		return fmt.Errorf("file run %s: %w", run.ID, err)
	}
	return ri.put(ctx, run, seen, func(cur *runs.Run) bool { return cur == nil || !cur.Done() })
}

// runEndLists are the lists an ended run is filed in by how it ended.
func runEndLists(run *runs.Run) []string {
	lists := []string{index.List("runs", "status", run.Status)}
	if _, hex, ok := strings.Cut(run.Digest, ":"); ok {
		lists = append(lists, index.List("runs", "digest", hex))
	}
	if repo := runRepository(run.Target); repo != "" {
		lists = append(lists, index.List("runs", "repo", repoToken(repo)))
	}
	return lists
}

// commitList is the list of the runs filed by commit (a commit's full id,
// or a tag object's that a push named), by when they were filed.
func commitList(commit string) string { return index.List("runs", "commit", commit) }

// runRepository is the repository of a run's target ("" when it names none).
func runRepository(target string) string {
	ref, err := name.ParseReference(target)
	if err != nil {
		return ""
	}
	return ref.Context().Name()
}

// storedRun is a run's summary as the runs bucket holds it, at revision
// rev (found false: none).
type storedRun struct {
	run   runs.Run
	rev   uint64
	found bool
}

// stored reads a run's summary.
func (ri *runIndexer) stored(ctx context.Context, id string) (storedRun, error) {
	var s storedRun
	var err error
	s.rev, s.found, err = getJSON(ctx, ri.kv, id, &s.run)
	if err != nil {
		return storedRun{}, fmt.Errorf("file run %s: %w", id, err)
	}
	return s, nil
}

// put stores run as its summary when replace says the one stored (seen,
// as the caller read it; nil: none) may be replaced. A writer that raced
// it reads again.
func (ri *runIndexer) put(ctx context.Context, run *runs.Run, seen storedRun, replace func(*runs.Run) bool) error {
	b, err := json.Marshal(run)
	if err != nil {
		return err
	}
	for {
		cur := &seen.run
		if !seen.found {
			cur = nil
		}
		if !replace(cur) {
			return nil
		}
		if _, raced, err := bus.PutRevision(ctx, ri.kv, run.ID, b, seen.rev); !raced {
			return err
		}
		if seen, err = ri.stored(ctx, run.ID); err != nil {
			return err
		}
	}
}

// summary is a run as the API shows it: folded from its events while it
// runs (its steps as they happen), the stored summary once it ended (the
// same fold, kept past the events' retention).
func (ri *runIndexer) summary(ctx context.Context, id string) (*runs.Run, error) {
	var stored runs.Run
	_, found, err := getJSON(ctx, ri.kv, id, &stored)
	if err != nil {
		return nil, err
	}
	if found && stored.Done() {
		return &stored, nil
	}
	run, err := runs.Fold(ctx, ri.js, id)
	if err != nil {
		return nil, err
	}
	if run.ID == "" {
		if found {
			return &stored, nil
		}
		return nil, fmt.Errorf("%w: no events for run %s", runs.ErrNoRun, id)
	}
	return run, nil
}

// page reads a page of runs, newest first: every run by when it started;
// filtered by commit, the runs filed by it (commitList), by when; or,
// filtered by status, digest or repository, the runs that ended so, by
// when they ended.
func (ri *runIndexer) page(ctx context.Context, q api.RunQuery) (api.Page[*runs.Run], error) {
	list := runsAll
	switch {
	case q.Commit != "":
		list = commitList(q.Commit)
	case q.Digest != "":
		_, hex, _ := strings.Cut(q.Digest, ":")
		list = index.List("runs", "digest", hex)
	case q.Repo != "":
		list = index.List("runs", "repo", repoToken(q.Repo))
	case q.Status != "" && q.Status != runs.Running:
		list = index.List("runs", "status", q.Status)
	}
	from, err := decodeCursor(q.Cursor)
	if err != nil {
		return api.Page[*runs.Run]{}, err
	}
	out := api.Page[*runs.Run]{Items: []*runs.Run{}}
	var failed error
	p, err := ri.index.Read(ctx, list, index.Query{From: from, Before: q.Until, Limit: q.Limit, Keep: func(en index.Entry) (bool, bool) {
		in, older := q.InRange(en.Time)
		if !in {
			return false, older
		}
		run, err := ri.summary(ctx, string(en.Data)) // every run list holds run ids
		if errors.Is(err, runs.ErrNoRun) {
			return false, true // past retention before it was ever summarized
		}
		if err != nil {
			failed = err
			return false, false
		}
		if !runMatches(q, run) {
			return false, true
		}
		out.Items = append(out.Items, run)
		return true, true
	}})
	if errors.Is(err, index.ErrCursor) {
		return out, fmt.Errorf("%w: %w (ask again without it)", errBadQuery, err)
	}
	if err := errors.Join(err, failed); err != nil {
		return out, fmt.Errorf("read runs: %w", err)
	}
	out.Next = encodeCursor(p.Next)
	return out, nil
}

// runMatches reports whether run passes q's filters. A commit's runs are
// its list's: the list of an annotated tag's id, which a push may name,
// holds runs that name the tag's commit once built.
func runMatches(q api.RunQuery, run *runs.Run) bool {
	return (q.Status == "" || q.Status == run.Status) && (q.Digest == "" || q.Digest == run.Digest) &&
		(q.Repo == "" || q.Repo == runRepository(run.Target))
}

// recent is the newest limit runs (the front page's).
func (ri *runIndexer) recent(ctx context.Context, limit int) ([]*runs.Run, error) {
	p, err := ri.page(ctx, api.RunQuery{ListQuery: api.ListQuery{Limit: limit}})
	return p.Items, err
}
