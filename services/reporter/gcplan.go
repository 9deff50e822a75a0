package reporter

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// Garbage collection plans from what only the pipeline knows: which
// digest each environment holds, which it held (what a rollback may need),
// what is pinned, which runs were last, and the whole tree of each digest
// (an index's platform manifests, and every referrer, nested, whether
// listed by the referrers API, its fallback tag, or cosign's tags). What
// the pipeline never verified is kept: its age and use are not known here.

// attachedTag is a tag that holds what is attached to a subject rather than
// an image: the referrers fallback tag (sha256-<hex>) and cosign's
// (sha256-<hex>.sig, .att, .sbom). They go with their subject.
var attachedTag = regexp.MustCompile(`^sha256-[0-9a-f]{64}(\.sig|\.att|\.sbom)?$`)

// gcGroup is a digest to delete and its tree, in the order to delete it:
// referrers before their subjects, fallback indexes before the subject,
// an index before its platform manifests.
type gcGroup struct {
	root  digest.Digest
	items []api.GCItem
}

// gcPlan is what garbage collection keeps, and the groups it deletes.
type gcPlan struct {
	kept   []api.GCItem
	groups []gcGroup
}

// plan sorts the repository's tagged digests into what is kept (with
// why) and what is deleted (with its tree), reading the registry once.
func (g *gcRun) plan(ctx context.Context) (gcPlan, error) {
	tagged, err := g.tagged(ctx)
	if err != nil {
		return gcPlan{}, err
	}
	why, err := g.protected(ctx)
	if err != nil {
		return gcPlan{}, err
	}
	roots := slices.Sorted(func(yield func(digest.Digest) bool) {
		for d := range tagged {
			if !yield(d) {
				return
			}
		}
	})
	var plan gcPlan
	var doomed []digest.Digest
	for _, d := range roots {
		reason, keep, err := g.keeps(ctx, d, why)
		if err != nil {
			return gcPlan{}, err
		}
		if keep {
			why[d] = reason
			continue
		}
		doomed = append(doomed, d)
	}
	trees, err := g.trees(ctx, roots)
	if err != nil {
		return gcPlan{}, err
	}
	// What a kept digest's tree holds is kept, whatever else refers to it.
	inKept := map[digest.Digest]string{}
	for _, d := range roots {
		if slices.Contains(doomed, d) {
			continue
		}
		for _, it := range trees[d] {
			it.Action, it.Why = api.GCKeep, why[d]
			if it.Kind != "image" {
				it.Why = fmt.Sprintf("in the tree of %s, kept: %s", runs.ShortDigest(d.String()), why[d])
			}
			if _, seen := inKept[digest.Digest(it.Digest)]; !seen {
				inKept[digest.Digest(it.Digest)] = it.Why
				plan.kept = append(plan.kept, withTags(it, tagged))
			}
		}
	}
	rule := g.rule()
	for _, d := range doomed {
		if why, kept := inKept[d]; kept { // a platform of a kept index, say
			plan.kept = append(plan.kept, api.GCItem{Digest: d.String(), Kind: "image", Tags: tagged[d], Action: api.GCKeep, Why: why})
			continue
		}
		grp := gcGroup{root: d}
		for _, it := range deleteOrder(trees[d]) {
			if _, kept := inKept[digest.Digest(it.Digest)]; kept {
				continue
			}
			it.Action, it.Why = api.GCDelete, rule
			grp.items = append(grp.items, withTags(it, tagged))
		}
		plan.groups = append(plan.groups, grp)
	}
	return plan, nil
}

// deleteOrder is the order a tree is deleted in, so that nothing left
// refers to what is gone at any moment: the fallback indexes (which list
// referrers, and which nothing refers to), then the referrers, those
// attached to a referrer before it, then the image, then its platform
// manifests (which the image, an index, lists).
func deleteOrder(tree []api.GCItem) []api.GCItem {
	rank := map[string]int{"fallback-index": 0, "referrer": 1, "image": 2, "platform": 3}
	out := slices.Collect(func(yield func(api.GCItem) bool) {
		for _, it := range slices.Backward(tree) { // push order, backwards
			if !yield(it) {
				return
			}
		}
	})
	slices.SortStableFunc(out, func(a, b api.GCItem) int { return cmp.Compare(rank[a.Kind], rank[b.Kind]) })
	return out
}

func withTags(it api.GCItem, tagged map[digest.Digest][]string) api.GCItem {
	it.Tags = append(slices.Clone(tagged[digest.Digest(it.Digest)]), it.Tags...)
	return it
}

// rule is why a digest goes: every rule that would keep it does not.
func (g *gcRun) rule() string {
	return fmt.Sprintf("held by no environment now nor within its rollback depth, not pinned, not among the last %d runs' digests, verified more than %d days ago",
		g.keepLast, g.keepDays)
}

// tagged is every digest a tag of the repository points at, but the tags
// of what is attached to another (which go with it), each with its tags.
func (g *gcRun) tagged(ctx context.Context) (map[digest.Digest][]string, error) {
	tags, err := g.reg.Tags(ctx, 1000)
	if errors.Is(err, failure.NotFound) {
		return map[digest.Digest][]string{}, nil // no such repository (yet): nothing to collect
	}
	if err != nil {
		return nil, err
	}
	// The trees are read knowing the tags: no request for a cosign or
	// fallback tag that is not there.
	g.reg = g.reg.WithTags(tags)
	tags = slices.DeleteFunc(slices.Clone(tags), attachedTag.MatchString)
	out := map[digest.Digest][]string{}
	g.roots = map[digest.Digest]v1.Descriptor{}
	var mu sync.Mutex
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(8)
	for _, tag := range tags {
		eg.Go(func() error {
			desc, found, err := g.reg.HeadManifest(ectx, tag)
			if err != nil || !found { // a tag deleted since it was listed is no tag
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			out[desc.Digest] = append(out[desc.Digest], tag)
			g.roots[desc.Digest] = desc
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	for d := range out {
		slices.Sort(out[d])
	}
	return out, nil
}

// protected is what the records keep, and why: each environment's
// current digest and the ones it held before it, to its rollback depth;
// the pins; the images of every release recorded, and what each would
// roll back to; the digests of the last keepLast runs.
func (g *gcRun) protected(ctx context.Context) (map[digest.Digest]string, error) {
	why := map[digest.Digest]string{}
	mark := func(d, reason string) {
		if _, ok := why[digest.Digest(d)]; !ok && d != "" {
			why[digest.Digest(d)] = reason
		}
	}
	for _, env := range g.r.cfg.Environments {
		held, err := g.held(ctx, env)
		if err != nil {
			return nil, err
		}
		for i, d := range held {
			if i == 0 {
				mark(d, "held by "+env+" now")
			} else {
				mark(d, fmt.Sprintf("%s held it, %d before its current digest: within its rollback depth of %d", env, i, g.r.cfg.Policy.RollbackDepth(env)))
			}
		}
	}
	pins, err := g.r.store.pins(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range pins {
		if p.Repository == g.repo.Name() {
			mark(p.Digest, "pinned in "+p.Environment+" by a rollback")
		}
	}
	// A release's images are kept while any environment keeps its record:
	// the release may be rolled back as one.
	releases, err := allJSON[events.Promotion](ctx, g.r.store.controls, "release.*.*")
	if err != nil {
		return nil, err
	}
	for _, rel := range releases {
		for _, im := range rel.Release.Images {
			if im.Repository == g.repo.Name() {
				mark(im.Digest, fmt.Sprintf("in release %s, recorded in %s", rel.Release.Name, rel.Environment))
				mark(im.PreviousDigest, fmt.Sprintf("what release %s in %s rolls back to", rel.Release.Name, rel.Environment))
			}
		}
	}
	last, err := g.lastRuns(ctx)
	if err != nil {
		return nil, err
	}
	for _, d := range last {
		mark(d, fmt.Sprintf("among the last %d runs' digests", g.keepLast))
	}
	return why, nil
}

// held is what env holds of the repository now, then the digests it held
// before, newest first, as many as its rollback depth.
func (g *gcRun) held(ctx context.Context, env string) ([]string, error) {
	depth := g.r.cfg.Policy.RollbackDepth(env)
	var out []string
	cur, found, err := g.r.store.current(ctx, env, g.repo.Name())
	if err != nil || !found {
		return nil, err
	}
	out = append(out, cur.Digest)
	q := api.HistoryQuery{ListQuery: api.ListQuery{Limit: api.MaxLimit}, Env: env, Repo: g.repo.Name()}
	for pages := 0; len(out) <= depth && pages < 20; pages++ {
		p, err := g.r.store.historyPage(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, h := range p.Items {
			if pr := h.Promotion; pr != nil && len(out) <= depth {
				for _, d := range []string{pr.Digest, pr.PreviousDigest} {
					if d != "" && !slices.Contains(out, d) && len(out) <= depth {
						out = append(out, d)
					}
				}
			}
		}
		if q.Cursor = p.Next; q.Cursor == "" {
			break
		}
	}
	return out, nil
}

// lastRuns are the digests of the repository's last keepLast runs (by
// when they ended), newest first.
func (g *gcRun) lastRuns(ctx context.Context) ([]string, error) {
	var out []string
	q := api.RunQuery{ListQuery: api.ListQuery{Limit: api.MaxLimit}, Repo: g.repo.Name()}
	for pages := 0; len(out) < g.keepLast && pages < 20; pages++ {
		p, err := g.r.runs.page(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, run := range p.Items {
			if run.Digest != "" && !slices.Contains(out, run.Digest) && len(out) < g.keepLast {
				out = append(out, run.Digest)
			}
		}
		if q.Cursor = p.Next; q.Cursor == "" {
			break
		}
	}
	return out, nil
}

// keeps says whether a tagged digest the records do not protect is kept
// all the same: one the pipeline never verified (its age and use are not
// known here), or verified within keepDays.
func (g *gcRun) keeps(ctx context.Context, d digest.Digest, why map[digest.Digest]string) (string, bool, error) {
	if reason, ok := why[d]; ok {
		return reason, true, nil
	}
	v, verified, err := g.r.store.verifiedDigest(ctx, g.repo.Name(), d.String())
	if err != nil {
		return "", false, err
	}
	if !verified {
		return "never verified by this pipeline: its age and use are not known here", true, nil
	}
	if age := g.started.Sub(v.VerifiedAt); age < time.Duration(g.keepDays)*24*time.Hour {
		return fmt.Sprintf("verified %s ago, within the last %d days", age.Round(time.Minute), g.keepDays), true, nil
	}
	return "", false, nil
}

// trees reads each root's tree from the registry, several at once: for
// each, its manifests and what is attached, nested, in the order a push
// writes them (what a thing refers to before it).
func (g *gcRun) trees(ctx context.Context, roots []digest.Digest) (map[digest.Digest][]api.GCItem, error) {
	out := make(map[digest.Digest][]api.GCItem, len(roots))
	var mu sync.Mutex
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(8)
	for _, d := range roots {
		eg.Go(func() error {
			items, err := g.tree(ectx, g.roots[d])
			mu.Lock()
			defer mu.Unlock()
			out[d] = items
			return err
		})
	}
	return out, eg.Wait()
}

// tree is d's tree, each manifest once, in push order: the platform
// manifests, the image, then each referrer, each followed by the fallback
// index of its referrers, if the repository has one.
func (g *gcRun) tree(ctx context.Context, root v1.Descriptor) ([]api.GCItem, error) {
	d := root.Digest
	nodes, err := g.reg.Tree(ctx, root)
	if err != nil {
		return nil, fmt.Errorf("read the tree of %s@%s: %w", g.repo.Name(), d, err)
	}
	var items []api.GCItem
	for _, n := range nodes {
		it := api.GCItem{Digest: n.Digest.String(), Kind: "referrer", Subject: d.String()}
		switch {
		case n.Digest == d:
			it.Kind, it.Subject = "image", ""
		case n.Parent == d:
			it.Kind = "platform"
		}
		if n.Tag != "" {
			it.Tags = []string{n.Tag} // cosign's
		}
		items = append(items, it)
		if it.Kind == "platform" || !g.reg.MayHave(registry.FallbackTag(n.Digest)) {
			continue
		}
		fb, found, err := g.reg.HeadManifest(ctx, registry.FallbackTag(n.Digest))
		if err != nil {
			return nil, err
		}
		if found {
			items = append(items, api.GCItem{Digest: fb.Digest.String(), Kind: "fallback-index", Subject: d.String(), Tags: []string{registry.FallbackTag(n.Digest)}})
		}
	}
	return items, nil
}
