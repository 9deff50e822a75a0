package reporter

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/google/uuid"
)

// Deployment reports. A deployer sends deployment.reported in the run
// that promoted what it deployed (examples/deployer): ok or failed, with
// its name and a detail. The reporter records each in the history (kinds
// deployed and deploy-failed, on the digest's page too) and keeps, per
// environment and repository, the last digest reported deployed ok. An
// environment whose policy says rollbackOn: failed goes back to that
// digest when a deployer reports a failed deployment of what it holds:
// an automatic rollback through the gates, pinned, with the report as its
// cause. The rollback's run and request are named after the report, so a
// report handled twice rolls back once.

// lastDeployed is the last digest of a repository reported deployed ok in
// an environment: what a failed deployment rolls back to.
type lastDeployed struct {
	Digest   string    `json:"digest"`
	At       time.Time `json:"at"`
	Deployer string    `json:"deployer"`
	Report   string    `json:"report"`
}

func deployedKey(env, repo string) string { return "deployed." + envToken(env) + "." + repoToken(repo) }

// rollbackIDs names an automatic rollback's run and request after the
// report that caused it.
var rollbackIDs = uuid.MustParse("6f1e3c2a-9b7d-4e0f-8a51-2d4c6b8e0f13")

// deployed handles deployment.reported.
func (r *reporter) deployed(ctx context.Context, m bus.Message, rep events.DeploymentReport) error {
	kind, at := "deployed", m.Event.Time().UTC()
	if rep.Status == events.DeployFailed {
		kind = "deploy-failed"
	}
	if err := r.store.addHistory(ctx, rep.Environment, rep.Repository, api.HistoryEntry{
		Kind: kind, At: at, Deployment: &rep, RunID: events.RunID(m.Event), EventID: m.Event.ID(),
	}); err != nil {
		return err
	}
	r.cfg.Log().Info(fmt.Sprintf("%s %s %s@%s, reported by %s: %s", kind, rep.Environment, rep.Repository, rep.Digest, rep.Deployer, rep.Detail), "run_id", events.RunID(m.Event))
	if rep.Status == events.DeployOK {
		return r.store.markDeployed(ctx, rep, lastDeployed{Digest: rep.Digest, At: at, Deployer: rep.Deployer, Report: m.Event.ID()})
	}
	if !r.cfg.Policy.RollbackOnFailure(rep.Environment) {
		return nil
	}
	return r.rollBackFailed(ctx, m, rep)
}

// markDeployed keeps d as the last digest reported deployed, unless a
// later report is kept already.
func (s *store) markDeployed(ctx context.Context, rep events.DeploymentReport, d lastDeployed) error {
	var cur lastDeployed
	_, found, err := getJSON(ctx, s.controls, deployedKey(rep.Environment, rep.Repository), &cur)
	if err != nil || found && cur.At.After(d.At) {
		return err
	}
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	if _, err := s.controls.Put(ctx, deployedKey(rep.Environment, rep.Repository), b); err != nil {
		return fmt.Errorf("record the deployment of %s: %w", rep.Digest, err)
	}
	return nil
}

// rollBackFailed rolls the environment back after a failed deployment of
// what it holds, to the last digest reported deployed there: it pins the
// environment and asks for the rollback, both named after the report.
func (r *reporter) rollBackFailed(ctx context.Context, m bus.Message, rep events.DeploymentReport) error {
	log := r.cfg.Log().With("run_id", events.RunID(m.Event))
	cur, found, err := r.store.current(ctx, rep.Environment, rep.Repository)
	if err != nil {
		return err
	}
	if !found || cur.Digest != rep.Digest {
		log.Info(fmt.Sprintf("%s holds %s no more: a failed deployment of it rolls nothing back", rep.Environment, rep.Digest))
		return nil
	}
	var ok lastDeployed
	_, found, err = getJSON(ctx, r.store.controls, deployedKey(rep.Environment, rep.Repository), &ok)
	if err != nil {
		return err
	}
	if !found || ok.Digest == rep.Digest {
		log.Warn(fmt.Sprintf("no other digest of %s was reported deployed in %s: nothing to roll back to (digestline rollback %s %s --to …)",
			rep.Repository, rep.Environment, rep.Environment, rep.Repository))
		return nil
	}
	runID := uuid.NewSHA1(rollbackIDs, []byte("run\x00"+m.Event.ID())).String()
	reason := fmt.Sprintf("automatic: %s reported a failed deployment: %s", rep.Deployer, cmp.Or(rep.Detail, "no detail"))
	if err := r.store.pin(ctx, api.Pin{Environment: rep.Environment, Repository: rep.Repository, Digest: ok.Digest, Reason: reason,
		By: "automatic rollback", At: m.Event.Time().UTC(), RunID: runID}); err != nil {
		return err
	}
	req := events.PromotionRequest{Repository: rep.Repository, Digest: ok.Digest, To: rep.Environment, RequestedBy: "automatic rollback (" + rep.Deployer + ")",
		Rollback: &events.Rollback{Reason: reason, From: rep.Digest, Report: m.Event.ID()}}
	ev, err := events.NewEvent(r.Bus.Source(), events.PromotionRequested, runID, rep.Repository, req)
	if err != nil {
		return err
	}
	ev.SetID(uuid.NewSHA1(rollbackIDs, []byte("request\x00"+m.Event.ID())).String())
	log.Warn(fmt.Sprintf("rolling %s back to %s for %s: %s", rep.Environment, ok.Digest, rep.Repository, reason))
	return r.Bus.Publish(ctx, ev)
}
