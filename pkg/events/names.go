package events

import "strings"

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

// Subject is the NATS subject, e.g. digestline.build.requested.
func (n Name) Subject() string { return subjectPrefix + string(n) }

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
	case BuildFailed, PushFailed, VerifyFailed, Promoted, PromotionRejected:
		return true
	}
	return false
}
