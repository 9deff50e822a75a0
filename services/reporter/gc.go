package reporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/service"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Garbage collection of a repository (POST /v1/gc, digestline gc): plan
// (gcplan.go), then delete each digest that is garbage with its tree, in
// an order that leaves nothing referring to what is gone, each checked
// against the records again right before it goes. One collection runs
// per repository at a time (a lease in the controls bucket). Every
// deletion is a digest.deleted event in the collection's run and an entry
// of the digest's history.

// gcLease is how long a collection keeps others of its repository out
// when it died without lifting its lease.
const gcLease = time.Hour

// gcRun is one collection of one repository.
type gcRun struct {
	r                  *reporter
	repo               name.Repository
	reg                *registry.Repo
	runID              string
	keepLast, keepDays int
	started            time.Time
	deletes            registry.Deletes // what the registry deletes (CheckDeletes)
	// roots are the tagged digests as the registry described them.
	roots map[digest.Digest]v1.Descriptor
}

// errGCBusy is a collection of the repository that is running already.
var errGCBusy = errors.New("a garbage collection of this repository is running")

// collect runs one collection: its report, and the error that stopped it
// (what it deleted before stays deleted, with nothing referring to it),
// also in the report. The report is kept as the repository's last
// (GET /v1/gc/{repository}).
func (r *reporter) collect(ctx context.Context, q api.GCRequest) (api.GCReport, error) {
	rep, err := r.collectGarbage(ctx, q)
	rep.Ended = time.Now().UTC()
	// A collection refused before it began (a bad request, one running
	// already) says why in its error; it is neither kept nor retried.
	if errors.Is(err, errGCBusy) || errors.Is(err, errBadQuery) {
		rep.Error = err.Error()
		return rep, err
	}
	if err != nil {
		rep.Error, rep.Hint = err.Error(), failure.As(err).Hint
	}
	if perr := r.store.putJSON(context.WithoutCancel(ctx), r.store.controls, gcReportKey(rep.Repository), keptReport(rep)); perr != nil {
		return rep, errors.Join(err, fmt.Errorf("keep the report: %w", perr))
	}
	return rep, err
}

// maxKeptReport bounds the report kept as a repository's last: a bus
// message (1 MiB by default) holds it.
const maxKeptReport = 768 << 10

// keptReport is rep as it is kept: whole, or, when its items would not fit
// in a bus message (thousands of manifests), with its counts and without
// them (the whole report was the answer to the collection).
func keptReport(rep api.GCReport) api.GCReport {
	if b, err := json.Marshal(rep); err == nil && len(b) <= maxKeptReport {
		return rep
	}
	rep.ItemsOmitted, rep.Items = len(rep.Items), []api.GCItem{}
	return rep
}

// collectGarbage is collect, without keeping the report.
func (r *reporter) collectGarbage(ctx context.Context, q api.GCRequest) (api.GCReport, error) {
	g := &gcRun{r: r, runID: uuid.NewString(), keepLast: api.DefaultKeepLast, keepDays: api.DefaultKeepDays, started: time.Now().UTC()}
	rep := api.GCReport{Repository: q.Repository, RunID: g.runID, DryRun: q.DryRun, Started: g.started, Items: []api.GCItem{}}
	var err error
	if g.repo, err = name.NewRepository(q.Repository); err != nil {
		return rep, fmt.Errorf("%w: repository %q: want registry/path: %v", errBadQuery, q.Repository, err)
	}
	rep.Repository = g.repo.Name()
	if q.KeepLast != nil {
		g.keepLast = *q.KeepLast
	}
	if q.KeepDays != nil {
		g.keepDays = *q.KeepDays
	}
	if g.keepLast < 0 || g.keepDays < 0 {
		return rep, fmt.Errorf("%w: keepLast and keepDays are 0 or more", errBadQuery)
	}
	if g.reg, err = r.Registry.Open(ctx, g.repo, !q.DryRun); err != nil {
		return rep, err
	}
	unlock, err := g.lock(ctx)
	if err != nil {
		return rep, err
	}
	defer unlock()
	plan, err := g.plan(ctx)
	if err != nil {
		return rep, err
	}
	rep.Items = append(rep.Items, plan.kept...)
	rep.Kept = len(plan.kept)
	if q.DryRun {
		for _, grp := range plan.groups {
			rep.Items = append(rep.Items, grp.items...)
		}
		return rep, nil
	}
	if len(plan.groups) > 0 {
		if g.deletes, err = g.reg.CheckDeletes(ctx); err != nil {
			return rep, err // before anything is deleted
		}
	}
	for _, grp := range plan.groups {
		done, err := g.delete(ctx, grp)
		rep.Items = append(rep.Items, done...)
		if err != nil {
			return rep, err
		}
	}
	for _, it := range rep.Items {
		switch it.Action {
		case api.GCDeleted:
			rep.Deleted++
		case api.GCUntagged, api.GCLeft:
			rep.Untagged++
		case api.GCSkipped:
			rep.Skipped++
		}
	}
	return rep, nil
}

// delete deletes a group in its order, once the records say again that
// its digest is garbage; it returns its items as they ended.
func (g *gcRun) delete(ctx context.Context, grp gcGroup) ([]api.GCItem, error) {
	items := grp.items
	if why, err := g.wanted(ctx, grp.root); err != nil || why != "" {
		for i := range items {
			items[i].Action, items[i].Why = api.GCSkipped, why
		}
		return items, err
	}
	if g.deletes == registry.DeletesTagsOnly {
		return g.untag(ctx, items)
	}
	for i, it := range items {
		gone, err := g.reg.DeleteManifest(ctx, digest.Digest(it.Digest))
		if err != nil {
			for j := i; j < len(items); j++ {
				items[j].Action = api.GCKeep
				items[j].Why = "not deleted: the collection stopped at " + it.Digest
			}
			return items, fmt.Errorf("delete %s@%s: %w", g.repo.Name(), it.Digest, err)
		}
		if !gone {
			items[i].Action = api.GCGone
			continue
		}
		items[i].Action = api.GCDeleted
		if err := g.record(ctx, items[i]); err != nil {
			return items, err
		}
	}
	g.r.cfg.Log().Info(fmt.Sprintf("gc: deleted %s@%s and its tree (%d manifests)", g.repo.Name(), grp.root, len(items)), "run_id", g.runID)
	return items, nil
}

// untag deletes the tags of a group's manifests, on a registry that
// deletes tags only: each manifest is then untagged, and the registry's
// own garbage collection removes it (the report says which). The tags of
// its referrers go before the image's.
func (g *gcRun) untag(ctx context.Context, items []api.GCItem) ([]api.GCItem, error) {
	for i, it := range items {
		for _, tag := range it.Tags {
			if _, err := g.reg.DeleteTag(ctx, tag); err != nil {
				return items, fmt.Errorf("untag %s:%s: %w", g.repo.Name(), tag, err)
			}
		}
		items[i].Action = api.GCLeft
		items[i].Why = "untagged: " + g.repo.RegistryStr() + " deletes tags only, and its own garbage collection removes what no tag holds (" + it.Why + ")"
		if len(it.Tags) > 0 {
			items[i].Action = api.GCUntagged
		}
	}
	return items, nil
}

// wanted is why d is no longer garbage ("" when it still is): an
// environment holds it now, it is pinned, or a run for it started since
// the plan. It is asked right before d's tree is deleted.
func (g *gcRun) wanted(ctx context.Context, d digest.Digest) (string, error) {
	for _, env := range g.r.cfg.Environments {
		cur, found, err := g.r.store.current(ctx, env, g.repo.Name())
		if err != nil {
			return "", err
		}
		if found && cur.Digest == d.String() {
			return fmt.Sprintf("promoted to %s since the plan: kept", env), nil
		}
		if p, pinned, err := g.r.store.pinOf(ctx, env, g.repo.Name()); err != nil {
			return "", err
		} else if pinned && p.Digest == d.String() {
			return fmt.Sprintf("pinned in %s since the plan: kept", env), nil
		}
	}
	p, err := g.r.runs.page(ctx, api.RunQuery{ListQuery: api.ListQuery{Since: g.started, Limit: api.MaxLimit}})
	if err != nil {
		return "", err
	}
	for _, run := range p.Items {
		if run.Digest == d.String() {
			return fmt.Sprintf("run %s for it started since the plan: kept", run.ID), nil
		}
	}
	return "", nil
}

// record announces a deletion (digest.deleted, in the collection's run)
// and files it in the digest's history.
func (g *gcRun) record(ctx context.Context, it api.GCItem) error {
	del := events.Deletion{Repository: g.repo.Name(), Digest: it.Digest, Kind: it.Kind, Subject: it.Subject, Tags: it.Tags, Rule: it.Why, DeletedAt: time.Now().UTC()}
	ev, err := events.NewEvent(g.r.Bus.Source(), events.DigestDeleted, g.runID, g.repo.Name(), del)
	if err != nil {
		return err
	}
	ev.SetID(uuid.NewSHA1(uuid.NameSpaceURL, []byte("digestline:gc/"+g.runID+"/"+it.Digest)).String())
	if err := g.r.Bus.Publish(ctx, ev); err != nil {
		return err
	}
	return g.r.store.addHistory(ctx, "", g.repo.Name(), api.HistoryEntry{Kind: "deleted", At: del.DeletedAt, Deletion: &del, RunID: g.runID, EventID: ev.ID()})
}

// gcHolder is who holds a repository's collection lease.
type gcHolder struct {
	RunID string    `json:"runId"`
	Since time.Time `json:"since"`
}

// lock takes the repository's collection lease, or errGCBusy; a lease
// older than gcLease (its collection died) is taken over. unlock lifts it.
func (g *gcRun) lock(ctx context.Context) (unlock func(), err error) {
	key := "gc." + repoToken(g.repo.Name())
	b, _ := json.Marshal(gcHolder{RunID: g.runID, Since: g.started})
	kv := g.r.store.controls
	rev, err := kv.Create(ctx, key, b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		var held gcHolder
		var at uint64
		at, _, err = getJSON(ctx, kv, key, &held)
		if err == nil && time.Since(held.Since) < gcLease {
			return nil, fmt.Errorf("%w: run %s, since %s (it lifts its lease when it ends, or after %s)", errGCBusy, held.RunID, held.Since.Format(time.RFC3339), gcLease)
		}
		if err == nil {
			rev, err = kv.Update(ctx, key, b, at)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("take the collection lease of %s: %w", g.repo.Name(), err)
	}
	return func() { _ = kv.Delete(context.WithoutCancel(ctx), key, jetstream.LastRevision(rev)) }, nil
}

// requestGC answers POST /v1/gc for an authorized caller: the collection's
// report (200), also when it stopped on an error (its status then: 409 for
// a registry that deletes nothing, or a collection already running).
func (r *reporter) requestGC(w http.ResponseWriter, req *http.Request) {
	if _, ok := r.authorize(w, req); !ok {
		return
	}
	var body api.GCRequest
	if !decodeBody(w, req, &body, `{"repository": "registry/repo", "keepLast": 5, "keepDays": 7, "dryRun": true}`) {
		return
	}
	rep, err := r.collect(req.Context(), body)
	status := http.StatusOK
	switch {
	case err == nil:
	case errors.Is(err, errBadQuery):
		status = http.StatusBadRequest
	case errors.Is(err, errGCBusy) || failure.As(err).Class == failure.Conflict:
		status = http.StatusConflict
	default:
		status = http.StatusBadGateway
	}
	service.WriteJSON(w, status, rep)
}
