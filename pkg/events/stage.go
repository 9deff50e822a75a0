package events

import (
	"fmt"
	"strings"

	"github.com/digestline/digestline/pkg/failure"
)

// The push stages, in order.
const (
	StageAuth            = "auth"
	StageManifestCheck   = "manifest check"
	StageBlobCheck       = "blob check"
	StageMount           = "mount"
	StageUpload          = "upload"
	StageManifestPublish = "manifest publish"
	StageTagUpdate       = "tag update"
	StageReferrers       = "referrers"
	// StageVerify runs only when the push is given a proof
	// (VerifyBeforeTag): after the referrers, before the tag update.
	StageVerify = "verify"
)

// Stage statuses.
const (
	StatusOK       = "ok"
	StatusSkipped  = "skipped"
	StatusRetrying = "retrying"
	StatusFailed   = "failed"
)

// StageReport is the outcome of one stage (or one failed attempt at it): the
// data of the push.stage event, whose Line is the [STAGE] log line.
type StageReport struct {
	Target   string `json:"target"`
	Digest   string `json:"digest"`
	Stage    string `json:"stage" jsonschema:"minLength=1"`
	Status   string `json:"status" jsonschema:"enum=ok,enum=skipped,enum=retrying,enum=failed"`
	Detail   string `json:"detail,omitempty"`
	Total    int    `json:"total,omitempty"` // blobs considered
	Existing int    `json:"existing,omitempty"`
	Uploaded int    `json:"uploaded,omitempty"`
	Mounted  int    `json:"mounted,omitempty"`
	Bytes    int64  `json:"bytes,omitempty"`
	Requests int    `json:"requests,omitempty"`
	Attempt  int    `json:"attempt,omitempty"`
	// DurationMS is how long the stage has taken, from its first attempt
	// to the end of this one: earlier attempts and the waits between
	// them included.
	DurationMS int64 `json:"durationMs"`
	// AttemptMS is how long this attempt alone took (omitted under a
	// millisecond, and by producers older than it).
	AttemptMS int64 `json:"attemptMs,omitempty"`
	// Error is why the attempt failed (status retrying or failed).
	Error *failure.Report `json:"error,omitempty"`
	// Line is the human view of the same fields: the [STAGE] log line.
	Line string `json:"line"`
}

// RenderLine renders the report's [STAGE] line.
func (r StageReport) RenderLine() string {
	switch r.Status {
	case StatusFailed:
		return fmt.Sprintf("[STAGE] %s FAILED (%s): %s — hint: %s", r.Stage, r.Error.Class, r.Error.Message, r.Error.Hint)
	case StatusRetrying:
		return fmt.Sprintf("[STAGE] %s retrying (attempt %d failed, %s): %s", r.Stage, r.Attempt, r.Error.Class, r.Error.Message)
	case StatusSkipped:
		return fmt.Sprintf("[STAGE] %s skipped (%s)", r.Stage, r.Detail)
	}
	if r.Stage == StageBlobCheck {
		return "[STAGE] blob check: " + r.Did()
	}
	return strings.TrimSpace(fmt.Sprintf("[STAGE] %s OK %s", r.Stage, r.Detail))
}

// Did is what a stage that went through did, as its line says it: the
// blob check, whose Detail is empty, counts the blobs the registry has.
func (r StageReport) Did() string {
	if r.Stage == StageBlobCheck && r.Status == StatusOK {
		return fmt.Sprintf("%d/%d exists", r.Existing, r.Total)
	}
	return r.Detail
}
