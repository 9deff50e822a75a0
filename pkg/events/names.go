package events

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// Name is an event's short name, "<noun>.<verb>". It derives the CloudEvents
// type and the NATS subject so the two can never disagree.
type Name string

// The events of the pipeline, in the order a run meets them.
const (
	BuildRequested     Name = "build.requested"
	BuildCompleted     Name = "build.completed"
	BuildFailed        Name = "build.failed"
	PushStage          Name = "push.stage"
	PushCompleted      Name = "push.completed"
	PushFailed         Name = "push.failed"
	VerifyCompleted    Name = "verify.completed"
	VerifyFailed       Name = "verify.failed"
	DriftDetected      Name = "drift.detected"
	PromotionRequested Name = "promotion.requested"
	PromotionApproved  Name = "promotion.approved"
	Promoted           Name = "promoted"
	PromotionRejected  Name = "promotion.rejected"
	Superseded         Name = "superseded"
)

const (
	typePrefix    = "dev.digestline."
	typeVersion   = ".v1"
	subjectPrefix = "digestline."
	// SubjectAll matches every pipeline event.
	SubjectAll = subjectPrefix + ">"
)

// Type is the CloudEvents type, e.g. dev.digestline.build.requested.v1.
func (n Name) Type() string { return typePrefix + string(n) + typeVersion }

// Subject is the NATS subject of this event in one run, e.g.
// digestline.build.requested.<runid>. The run id in the subject lets the
// server hand a run's events, in order, to whoever asks for that run.
func (n Name) Subject(runID string) string { return subjectPrefix + string(n) + "." + runID }

// Filter matches this event in every run: digestline.build.requested.*.
func (n Name) Filter() string { return n.Subject("*") }

// Names lists every event of the contract (each has a data type), sorted.
func Names() []Name { return slices.Sorted(maps.Keys(dataTypes)) }

// RunSubjects are the filters of every event of one run: a consumer
// filtered on them reads that run alone, in stream order. Two wildcards
// (digestline.<noun>.<verb>.<run> and digestline.<verb>.<run>) rather than
// a subject per event: the server matches a new consumer's filters against
// the stream's subjects, and it does so once per run read.
func RunSubjects(runID string) []string {
	return []string{subjectPrefix + "*.*." + runID, subjectPrefix + "*." + runID}
}

// IsContractSubject reports whether subject is one an event of the contract
// is published on: digestline.<event>.<run id>.
func IsContractSubject(subject string) bool {
	rest, ok := strings.CutPrefix(subject, subjectPrefix)
	i := strings.LastIndexByte(rest, '.')
	if !ok || i < 0 {
		return false
	}
	_, known := dataTypes[Name(rest[:i])]
	return known && CheckRunID(rest[i+1:]) == nil
}

// runIDPattern is what a run id may be: one NATS subject token, with no
// wildcard in it.
var runIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// CheckRunID says why runID cannot be a run id, or nil.
func CheckRunID(runID string) error {
	if !runIDPattern.MatchString(runID) {
		return fmt.Errorf("run id %q: want 1 to 128 letters, digits, '-' or '_'", runID)
	}
	return nil
}

// NameOfType returns the Name for a CloudEvents type and whether the type is
// one this contract knows (including its version).
func NameOfType(ceType string) (Name, bool) {
	s, ok := strings.CutPrefix(ceType, typePrefix)
	if !ok {
		return "", false
	}
	s, ok = strings.CutSuffix(s, typeVersion)
	if !ok {
		return "", false
	}
	n := Name(s)
	_, known := dataTypes[n]
	return n, known
}

// Terminal reports whether an event ends a run: after it, nothing more
// happens for that run unless someone asks again.
func (n Name) Terminal() bool {
	switch n {
	case BuildFailed, PushFailed, VerifyFailed, Promoted, PromotionRejected, Superseded:
		return true
	}
	return false
}
