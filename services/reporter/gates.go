package reporter

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/policy"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/tags"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// The gates a promotion passes, in order (admit): the environment is in
// the chain, the digest was verified here, the environment before holds it
// (requestGates and chainGates, which need only what the store holds, and
// are table-tested in gates_test.go); the environment is not pinned
// (pinGate, controls.go) nor frozen (freezeGate); then, at once, the
// environment's tag has not drifted (tagInPlace) and the evidence holds
// (evidenceGates: the required referrers, then the policy's rules over
// policyinput.go's inputs). A gate refuses with refuse(gate, hint, reason); a registry that
// cannot be read is asked again (unreachable).

// requestGates checks what a request names: an environment of the chain
// (the environment gate), a repository and a digest (the verified gate).
// It returns the repository.
func requestGates(chain []string, req events.PromotionRequest) (name.Repository, error) {
	if !slices.Contains(chain, req.To) {
		return name.Repository{}, refuse(GateEnvironment, "promote to one of "+strings.Join(chain, ", "),
			"%q is not in the promotion chain %s", req.To, strings.Join(chain, " → "))
	}
	repo, err := name.NewRepository(req.Repository)
	if err != nil {
		return name.Repository{}, refuse(GateVerified, "name the repository as registry/path", "repository %q: %v", req.Repository, err)
	}
	if _, err := digest.Parse(req.Digest); err != nil {
		return name.Repository{}, refuse(GateVerified, "promote by digest: sha256:<64 hex>", "digest %q: %v", req.Digest, err)
	}
	return repo, nil
}

// chainGates decides the gates of the promotion chain for a request that
// passed requestGates: the digest was verified by this pipeline (v, when
// verified), and it is what the environment before holds (prev, nil for
// nothing) — unless the environment held it before: a rollback.
func chainGates(chain []string, req events.PromotionRequest, v Verified, verified bool, prev *events.Promotion) error {
	if !verified {
		return refuse(GateVerified, "ship it through the pipeline first: only digests the verifier proved can be promoted",
			"%s@%s was never verified by this pipeline", req.Repository, req.Digest)
	}
	if req.Rollback != nil && !slices.Contains(v.PromotedTo, req.To) {
		return refuse(GatePreviousEnv, "roll back to a digest it held: digestline records --history --env "+req.To,
			"a rollback goes back to a digest %s held before, and it never held %s", req.To, req.Digest)
	}
	i := slices.Index(chain, req.To)
	if i <= 0 || slices.Contains(v.PromotedTo, req.To) || (prev != nil && prev.Digest == req.Digest) {
		return nil
	}
	holds := "nothing"
	if prev != nil {
		holds = prev.Digest
	}
	return refuse(GatePreviousEnv, fmt.Sprintf("promote it to %s first", chain[i-1]),
		"%s is not promoted in %s, which holds %s", req.Digest, chain[i-1], holds)
}

// The gates, by the name a rejection reports.
const (
	GateEnvironment       = "environment"          // the environment is in the chain
	GateVerified          = "verified"             // the digest was verified in this repository
	GatePreviousEnv       = "previous-environment" // it is promoted in the environment before (or was in this one: a rollback)
	GateTagDrift          = "tag-drift"            // the environment's tag points where the record says
	GateRequiredReferrers = "required-referrers"   // the artifacts the environment requires are attached
)

// gates checks a request against every gate, in order, and approves it or
// names the first gate that refuses. An error means a gate could not be
// checked (the registry or the bus is unreachable), not that it refused.
// turn is the run asking, and when it was asked for: a newer request that
// moved the environment's tag already supersedes it.
func (r *reporter) gates(ctx context.Context, req events.PromotionRequest, requestID string, at time.Time, turn tags.Request) (decision, error) {
	a, err := r.admit(ctx, req, requestID, at, turn)
	var no *refusal
	var later *overtaken
	if errors.As(err, &later) {
		return decision{Supersession: &events.Supersession{Tag: later.Tag, Environment: req.To, Repository: req.Repository, Digest: req.Digest,
			By: later.By.RunID, ByDigest: later.By.Digest, Step: "gates"}}, nil
	}
	if errors.As(err, &no) {
		return decision{Rejection: &events.Rejection{Environment: req.To, Repository: req.Repository, Digest: req.Digest, Gate: no.gate,
			Reason: no.reason, Hint: no.hint, RequestedBy: req.RequestedBy, RejectedAt: at}}, nil
	}
	if err != nil {
		return decision{}, err
	}
	return decision{Approval: a}, nil
}

// refusal is a gate's answer no: the gate, why, and what to do.
type refusal struct{ gate, hint, reason string }

func (e *refusal) Error() string { return e.gate + ": " + e.reason }

// overtaken is the tag gate's answer "not this one": a newer request of
// the pipeline moved the environment's tag already (package tags).
type overtaken struct {
	Tag string
	By  tags.Request
}

func (e *overtaken) Error() string {
	return fmt.Sprintf("tag %s moved for run %s, requested later", e.Tag, e.By.RunID)
}

func refuse(gate, hint, format string, a ...any) error {
	return &refusal{gate: gate, hint: hint, reason: fmt.Sprintf(format, a...)}
}

// unreachable is a registry failure met at gate: a registry that fails for
// a moment is asked again (the request is retried); one that refuses for
// good refuses at the gate it blocks.
func unreachable(gate string, err error) error {
	e := failure.As(err)
	if e.Temporary() {
		return err
	}
	return refuse(gate, e.Hint, "cannot check the registry: %v", err)
}

// admit runs the gates in order: the approval when all pass, a *refusal
// naming the first that does not, or the error that kept one from being
// checked.
func (r *reporter) admit(ctx context.Context, req events.PromotionRequest, requestID string, at time.Time, turn tags.Request) (*events.Approval, error) {
	repo, v, err := r.inChain(ctx, req)
	if err != nil {
		return nil, err
	}
	if err := r.pinGate(ctx, req); err != nil {
		return nil, err
	}
	emergency, err := r.freezeGate(ctx, req, at)
	if err != nil {
		return nil, err
	}
	place, tag, err := r.placeOf(req.To, req.Repository)
	if err != nil {
		return nil, refuse(GateEnvironment, "fix the environment's place (docs/promotion.md)", "%v", err)
	}
	// The tag's gate reads the environment's place, the evidence's gates
	// read the source: both at once (a round trip less to a registry far
	// away), their refusals still reported in the gates' order.
	var (
		got    string
		tagErr error
		wg     sync.WaitGroup
	)
	wg.Go(func() { got, tagErr = r.tagInPlace(ctx, req, turn, place, tag) })
	source, err := r.evidenceGates(ctx, req, at)
	wg.Wait()
	if err = cmp.Or(tagErr, err); err != nil {
		return nil, err
	}
	a := &events.Approval{
		Environment: req.To, Repository: req.Repository, Digest: req.Digest, Tag: tag, Previous: got,
		RequestedBy: req.RequestedBy, RequestedAt: turn.RequestedAt, Evidence: events.Evidence{Request: requestID, Build: v.Evidence.Build},
		Rollback: req.Rollback, Emergency: emergency, Trust: v.Trust, Commit: v.Commit,
	}
	if place.String() != repo.String() {
		a.Location, a.Source = place.String(), source.String()
	}
	return a, nil
}

// evidenceGates checks the gates over what is attached to the digest: the
// referrers the environment requires, and its policy. The evidence is read
// where the digest comes from, which it returns: the repository builds are
// pushed to, or the previous environment's place when the promotion copies
// from there.
func (r *reporter) evidenceGates(ctx context.Context, req events.PromotionRequest, at time.Time) (name.Repository, error) {
	source, err := r.sourceOf(ctx, req)
	if err != nil {
		return source, err
	}
	reg, err := r.Registry.Open(ctx, source, false)
	if err != nil {
		return source, unreachable(GateVerified, err)
	}
	if err := r.requiredReferrers(ctx, reg, req); err != nil {
		return source, err
	}
	if clauses, err := r.checkPolicy(ctx, reg, req, at); err != nil {
		return source, unreachable(GatePolicy+"evidence", err)
	} else if failed := firstFailed(clauses); failed != nil {
		return source, refuse(GatePolicy+failed.Name, "meet the rule (docs/policy.md): digestline promote --dry-run shows every clause with its values",
			"%s", failed.Reason())
	}
	return source, nil
}

// tagInPlace checks the tag-drift gate: the environment's tag in its place
// points where the environment's record says, or at the digest already,
// or where a run of the pipeline moved it (package tags: a move the record
// does not show yet). A newer request's move overtakes this one
// (*overtaken). It returns where the tag points ("" for nowhere).
func (r *reporter) tagInPlace(ctx context.Context, req events.PromotionRequest, turn tags.Request, place name.Repository, tag string) (string, error) {
	cur, hasCur, err := r.store.current(ctx, req.To, req.Repository)
	if err != nil {
		return "", err
	}
	there, err := r.Registry.Open(ctx, place, false)
	if err != nil {
		return "", unreachable(GateTagDrift, err)
	}
	look := func(ctx context.Context) (string, error) {
		found, present, err := there.HeadManifest(ctx, tag)
		if err != nil {
			return "", unreachable(GateTagDrift, err)
		}
		if !present {
			return "", nil
		}
		return found.Digest.String(), nil
	}
	got, mover, err := r.Tags.Mover(ctx, place.Name()+":"+tag, look)
	if err != nil {
		return "", err
	}
	switch {
	case mover != nil && mover.Newer(turn) && got != req.Digest:
		return "", &overtaken{Tag: place.Name() + ":" + tag, By: *mover}
	case mover != nil || got == req.Digest:
		return got, nil
	}
	var want string
	if hasCur {
		want = cur.Digest
	}
	if got == want {
		return got, nil
	}
	hint := fmt.Sprintf("someone moved %s:%s outside the pipeline: inspect %s, then put the tag back on %s (or delete it) and promote again",
		place, tag, cmp.Or(got, "the tag"), cmp.Or(want, "nothing"))
	if hasCur && cur.Place() != place.String() {
		// The environment has moved to another place since its last
		// promotion: what it holds is to be brought along first.
		hint = fmt.Sprintf("%s now lives at %s, its record at %s: copy what it holds there first (digestline copy %s %s:%s), then promote again",
			req.To, place, cur.Place(), cur.Ref(), place, tag)
	}
	return "", refuse(GateTagDrift, hint, "tag %s points at %s, but %s's record says %s", tag, cmp.Or(got, "nothing"), req.To, cmp.Or(want, "nothing"))
}

// requiredReferrers checks that the artifacts the environment requires
// (by artifact type) are attached to the digest in reg.
func (r *reporter) requiredReferrers(ctx context.Context, reg *registry.Repo, req events.PromotionRequest) error {
	required := r.cfg.RequiredReferrers[req.To]
	if len(required) == 0 {
		return nil
	}
	refs, err := reg.Referrers(ctx, digest.Digest(req.Digest))
	if err != nil {
		return unreachable(GateRequiredReferrers, err)
	}
	var missing []string
	for _, t := range required {
		if !slices.ContainsFunc(refs, func(d v1.Descriptor) bool { return d.ArtifactType == t }) {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return refuse(GateRequiredReferrers, "attach them (digestline attach, or ship with --sbom) and promote again",
			"%s requires referrers of type %s; missing: %s", req.To, strings.Join(required, ", "), strings.Join(missing, ", "))
	}
	return nil
}

// checkPolicy evaluates the environment's policy rules (none without a
// policy for it).
func (r *reporter) checkPolicy(ctx context.Context, reg *registry.Repo, req events.PromotionRequest, at time.Time) ([]policy.Clause, error) {
	if !r.cfg.Policy.Has(req.To) {
		return nil, nil
	}
	input, err := r.policyInput(ctx, reg, req, at)
	if err != nil {
		return nil, err
	}
	return r.cfg.Policy.Evaluate(req.To, input), nil
}

func firstFailed(clauses []policy.Clause) *policy.Clause {
	for i := range clauses {
		if !clauses[i].Passed {
			return &clauses[i]
		}
	}
	return nil
}

// GatePolicy prefixes the gate a policy rule's rejection names:
// policy/<rule>.
const GatePolicy = "policy/"
