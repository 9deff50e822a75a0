package api

import "time"

// GCRequest is the body of POST /v1/gc: collect the garbage of one
// repository, keeping what any environment holds or may roll back to,
// what is pinned, the digests of the last KeepLast runs and those first
// verified within KeepDays, and everything those reference; DryRun plans
// and deletes nothing.
type GCRequest struct {
	Repository string `json:"repository"`
	KeepLast   *int   `json:"keepLast,omitempty"` // default DefaultKeepLast
	KeepDays   *int   `json:"keepDays,omitempty"` // default DefaultKeepDays
	DryRun     bool   `json:"dryRun,omitempty"`
}

// Defaults of a GCRequest.
const (
	DefaultKeepLast = 5
	DefaultKeepDays = 7
)

// GC actions: what a plan does with a manifest, and what became of it.
const (
	GCKeep    = "keep"
	GCDelete  = "delete"  // planned (a dry run's answer)
	GCDeleted = "deleted" // done
	GCSkipped = "skipped" // planned, but promoted, pinned or run since: kept
	GCGone    = "gone"    // planned, but no longer in the registry
	// On a registry that deletes tags only: its tags deleted, and a
	// manifest (untagged, or never tagged: a referrer) left to the
	// registry's own garbage collection.
	GCUntagged = "untagged"
	GCLeft     = "left"
)

// GCItem is one manifest of a repository as garbage collection saw it:
// an image (with its tags), an index's platform manifest, a referrer of
// Subject, or a referrers fallback index; what it did with it, and why.
type GCItem struct {
	Digest  string   `json:"digest"`
	Kind    string   `json:"kind"`
	Subject string   `json:"subject,omitempty"`
	Tags    []string `json:"tags,omitempty"`
	Action  string   `json:"action"`
	Why     string   `json:"why"`
}

// GCReport is the answer to POST /v1/gc: every manifest garbage
// collection saw, in the order it kept or deleted them (referrers before
// their subjects, an index before its platform manifests), and the
// counts. Error, when set, is why it stopped (what it deleted before
// stays deleted, and nothing refers to it).
type GCReport struct {
	Repository string    `json:"repository"`
	RunID      string    `json:"runId"`
	DryRun     bool      `json:"dryRun,omitempty"`
	Started    time.Time `json:"started"`
	Ended      time.Time `json:"ended"`
	Items      []GCItem  `json:"items"`
	Kept       int       `json:"kept"`
	Deleted    int       `json:"deleted"`
	Skipped    int       `json:"skipped,omitempty"`
	// Untagged counts the manifests a registry that deletes tags only
	// was left to remove (untagged and left).
	Untagged int `json:"untagged,omitempty"`
	// ItemsOmitted, in a kept report (GET /v1/gc/{repository}), counts the
	// items left out: too many to keep (the collection's answer had them).
	ItemsOmitted int    `json:"itemsOmitted,omitempty"`
	Error        string `json:"error,omitempty"`
	Hint         string `json:"hint,omitempty"`
}
