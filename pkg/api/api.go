package api

import (
	"errors"
	"fmt"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/policy"
	"github.com/google/go-containerregistry/pkg/name"
)

// PromoteRequest is the body of POST /v1/promotions: promote
// repository@digest (or ref, "repository@sha256:…") to environment to.
type PromoteRequest struct {
	Ref        string `json:"ref,omitempty"`
	Repository string `json:"repository,omitempty"`
	Digest     string `json:"digest,omitempty"`
	To         string `json:"to"`
}

// PromoteAccepted is the answer to POST /v1/promotions: follow the run at
// GET /v1/runs/{runId}.
type PromoteAccepted struct {
	RunID   string `json:"runId"`
	EventID string `json:"eventId"`
}

// Request validates the body into a promotion.requested payload.
func (b PromoteRequest) Request() (events.PromotionRequest, error) {
	repo, dgst := b.Repository, b.Digest
	if b.Ref != "" {
		d, err := name.NewDigest(b.Ref)
		if err != nil {
			return events.PromotionRequest{}, fmt.Errorf("ref %q: promote by digest, registry/repo@sha256:<hex>: %w", b.Ref, err)
		}
		repo, dgst = d.Context().Name(), d.DigestStr()
	}
	if _, err := name.NewDigest(repo + "@" + dgst); err != nil {
		return events.PromotionRequest{}, fmt.Errorf("give ref (registry/repo@sha256:<hex>) or repository and digest: %w", err)
	}
	if b.To == "" {
		return events.PromotionRequest{}, errors.New(`"to" names the environment to promote to`)
	}
	return events.PromotionRequest{Repository: repo, Digest: dgst, To: b.To}, nil
}

// RollbackRequest is the body of POST /v1/rollbacks: move environment
// back, for repository, to the digest it held before its current one, or
// to To, a digest it held before; or, with Release instead, every image
// of that release back to the digest it held before the release. Reason
// says why (required).
type RollbackRequest struct {
	Environment string `json:"environment"`
	Repository  string `json:"repository,omitempty"`
	Release     string `json:"release,omitempty"`
	To          string `json:"to,omitempty"`
	Reason      string `json:"reason"`
}

// ReleaseRequest is the body of POST /v1/releases, and the release file
// of digestline promote --release: several images, by digest, promoted
// to an environment as one.
type ReleaseRequest struct {
	Name   string   `json:"name"`
	To     string   `json:"to"`
	Images []string `json:"images"` // registry/repo@sha256:<hex>
}

// Request validates the body into a release.requested payload.
func (b ReleaseRequest) Request() (events.ReleaseRequest, error) {
	rr := events.ReleaseRequest{Name: b.Name, To: b.To}
	if b.To == "" {
		return rr, errors.New(`"to" names the environment to promote the release to`)
	}
	for _, ref := range b.Images {
		d, err := name.NewDigest(ref)
		if err != nil {
			return rr, fmt.Errorf("image %q: name each image by digest, registry/repo@sha256:<hex>: %w", ref, err)
		}
		rr.Images = append(rr.Images, events.ReleaseImage{Repository: d.Context().Name(), Digest: d.DigestStr()})
	}
	return rr, rr.Check()
}

// Pin is an environment held at a digest for a repository: every
// promotion into it but a rollback is refused until someone unpins it
// (DELETE /v1/pins/{env}/{repo}). A rollback pins, so that automation
// does not undo it. In the history's unpinned entry, By and At are who
// lifted it and when.
type Pin struct {
	Environment string    `json:"environment"`
	Repository  string    `json:"repository"`
	Digest      string    `json:"digest"` // what the rollback asked to move it back to
	Reason      string    `json:"reason"`
	By          string    `json:"by"`
	At          time.Time `json:"at"`
	RunID       string    `json:"runId,omitempty"` // the rollback's run
}

// FreezeRequest is the body of POST /v1/freezes: refuse every promotion
// into environment until Until, for Reason.
type FreezeRequest struct {
	Environment string    `json:"environment"`
	Until       time.Time `json:"until"`
	Reason      string    `json:"reason"`
}

// Freeze is an environment frozen: every promotion into it is refused
// until Until (but one an emergency approver approved). Name is the
// policy's window, or "" for a freeze someone set (By, At); in the
// history's unfrozen entry, By and At are who lifted it and when.
type Freeze struct {
	Environment string    `json:"environment"`
	Name        string    `json:"name,omitempty"`
	Until       time.Time `json:"until"`
	Reason      string    `json:"reason"`
	By          string    `json:"by,omitempty"`
	At          time.Time `json:"at,omitzero"`
}

// ApproveRequest is the body of POST /v1/approvals: the digest (ref, or
// repository and digest) and the environment the approval is for.
type ApproveRequest = PromoteRequest

// PolicyReport is the answer to GET /v1/policy/{env}: what a promotion of
// the digest would meet now, without promoting it.
type PolicyReport struct {
	Environment string `json:"environment"`
	Repository  string `json:"repository"`
	Digest      string `json:"digest"`
	// Allowed is true when every built-in gate and every rule passes.
	Allowed bool `json:"allowed"`
	// Gate and Reason name what refuses it, when something does.
	Gate    string          `json:"gate,omitempty"`
	Reason  string          `json:"reason,omitempty"`
	Hint    string          `json:"hint,omitempty"`
	Clauses []policy.Clause `json:"clauses"`
}

// HistoryEntry is one promotion or rejection, as GET /v1/history lists
// them (newest first, a Page at a time). A superseded entry is a promotion
// whose tag moved, then on to a newer request's digest recorded before it:
// the environment held it in between, and no promoted event announced it.
type HistoryEntry struct {
	Kind      string            `json:"kind"` // one of HistoryKinds
	At        time.Time         `json:"at"`
	Promotion *events.Promotion `json:"promotion,omitempty"`
	Rejection *events.Rejection `json:"rejection,omitempty"`
	Pin       *Pin              `json:"pin,omitempty"`    // pinned and unpinned: the pin
	Freeze    *Freeze           `json:"freeze,omitempty"` // frozen and unfrozen: the freeze
	// Deployment is a deployer's report (deployed, deploy-failed).
	Deployment *events.DeploymentReport `json:"deployment,omitempty"`
	// Failure is why a release failed (release-failed), and what became
	// of its tags (its Release).
	Failure *events.Failure `json:"failure,omitempty"`
	// Deletion is a manifest garbage collection deleted (deleted).
	Deletion *events.Deletion `json:"deletion,omitempty"`
	RunID    string           `json:"runId"`
	EventID  string           `json:"eventId"` // the promoted or rejected event
}

// ApprovalRecord is one approval of a digest for an environment: who
// (the API token's name) and when.
type ApprovalRecord struct {
	Environment string    `json:"environment"`
	Repository  string    `json:"repository"`
	Digest      string    `json:"digest"`
	By          string    `json:"by"`
	At          time.Time `json:"at"`
}

// PromotionRecord is the answer to GET /v1/promotions/{env}/{repo}: the
// environment's current record for the repository (nil when none) and the
// newest page of its history; Next, when set, is the cursor of the next
// page at GET /v1/history?env=&repo=&cursor=.
type PromotionRecord struct {
	Current *events.Promotion `json:"current"`
	History []HistoryEntry    `json:"history"`
	Next    string            `json:"next,omitempty"`
}

// DigestReport answers GET /v1/digests/{digest}: where a digest is
// promoted now, where it was and until when, and the runs that built,
// pushed, verified or promoted it ("where is this digest?").
type DigestReport struct {
	Digest  string             `json:"digest"`
	Current []events.Promotion `json:"current"`
	Held    []Holding          `json:"held"`
	// Runs are the ids of the runs that promoted it, and of the recent runs
	// that built or pushed it.
	Runs []string `json:"runs"`
	// Deleted says when garbage collection deleted it, from which
	// repository, and why.
	Deleted []events.Deletion `json:"deleted,omitempty"`
}

// Holding is a time an environment held a digest: from its promotion
// until the next one moved the environment on (nil: it still does).
type Holding struct {
	Environment string     `json:"environment"`
	Repository  string     `json:"repository"`
	From        time.Time  `json:"from"`
	Until       *time.Time `json:"until,omitempty"`
	RunID       string     `json:"runId"`
}
