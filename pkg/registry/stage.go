package registry

import (
	"errors"
	"fmt"
	"strings"
	"time"
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
)

// Stage statuses (the same words as the push.stage event).
const (
	StatusOK       = "ok"
	StatusSkipped  = "skipped"
	StatusRetrying = "retrying"
	StatusFailed   = "failed"
)

// StageReport is the outcome of one stage (or one retry of it).
type StageReport struct {
	Stage    string
	Status   string
	Detail   string
	Total    int // blobs considered
	Existing int
	Uploaded int
	Mounted  int
	Bytes    int64
	Requests int
	Attempt  int
	Duration time.Duration
	Err      *Error
}

// Line is the report's human view: one [STAGE] log line.
func (r StageReport) Line() string {
	switch r.Status {
	case StatusFailed:
		return fmt.Sprintf("[STAGE] %s FAILED (%s): %v — hint: %s", r.Stage, r.Err.Class, r.Err.Err, r.Err.Hint)
	case StatusRetrying:
		return fmt.Sprintf("[STAGE] %s retrying (attempt %d failed, %s): %v", r.Stage, r.Attempt, r.Err.Class, r.Err.Err)
	case StatusSkipped:
		return fmt.Sprintf("[STAGE] %s skipped (%s)", r.Stage, r.Detail)
	}
	if r.Stage == StageBlobCheck {
		return fmt.Sprintf("[STAGE] blob check: %d/%d exists", r.Existing, r.Total)
	}
	return strings.TrimSpace(fmt.Sprintf("[STAGE] %s OK %s", r.Stage, r.Detail))
}

// skipped is returned by a stage function that has nothing to do.
type skipped struct{ reason string }

func (s skipped) Error() string { return s.reason }

func skip(format string, a ...any) error { return skipped{fmt.Sprintf(format, a...)} }

func asSkip(err error) (string, bool) {
	var s skipped
	if errors.As(err, &s) {
		return s.reason, true
	}
	return "", false
}
