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
	// DeploymentReported is a deployer's word on a promotion it deployed,
	// in the promoted run.
	DeploymentReported Name = "deployment.reported"
	// A release promotes several images as one (release.go): its request,
	// its gates' approval of every image, the moves of every tag, and
	// their verification; it ends as any promotion does.
	ReleaseRequested Name = "release.requested"
	ReleaseApproved  Name = "release.approved"
	ReleaseMoved     Name = "release.moved"
	ReleaseVerified  Name = "release.verified"
	// An environment frozen, by someone or by a window of its policy, and
	// unfrozen: each in a run of its own, for whoever is to hear of it.
	EnvironmentFrozen   Name = "environment.frozen"
	EnvironmentUnfrozen Name = "environment.unfrozen"
	// DigestDeleted is a manifest garbage collection deleted from a
	// registry, and the rule that let it: in the gc's run.
	DigestDeleted Name = "digest.deleted"
	// AdmissionRequested is an image another tool built and pushed, asked
	// into the pipeline (admission.go): it starts a run as build.requested does.
	AdmissionRequested Name = "admission.requested"
)

// takers are the services whose handling of an event moves its run on
// (the contract's "from → to"), by the name of their durable consumer.
var takers = map[Name]string{
	BuildRequested:     "builder",
	BuildCompleted:     "pusher",
	PromotionApproved:  "pusher",
	ReleaseApproved:    "pusher",
	PushCompleted:      "verifier",
	ReleaseMoved:       "verifier",
	AdmissionRequested: "verifier",
	VerifyCompleted:    "reporter",
	PromotionRequested: "reporter",
	ReleaseRequested:   "reporter",
	ReleaseVerified:    "reporter",
}

// Taker is the service that takes an event of n and moves its run on, by
// the name of its durable consumer (build.requested: "builder"); "" for
// an event after which a run waits for none (a report such as push.stage,
// whose service holds the event it answers; an end).
func (n Name) Taker() string { return takers[n] }

// RunStarts are the events a run starts with.
var RunStarts = []Name{BuildRequested, PromotionRequested, ReleaseRequested, AdmissionRequested}

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

// The run log (RunLogStream) holds the stream's events again, on
// runlog.<run id>.<event>: the run id first, so that the server finds one
// run's events by their common prefix. On digestline.<event>.<run id> it
// has to visit every subject of the stream to find one run's (the run id
// is the last token: nothing before it narrows the search), which made
// each run read cost the whole history: 2–3 ms of the server's CPU at 15k
// events, growing with every run.
const runLogPrefix = "runlog."

// RunLogSubject is where the run log holds this event of one run:
// runlog.<run id>.build.requested.
func (n Name) RunLogSubject(runID string) string { return runLogPrefix + runID + "." + string(n) }

// RunLogFilter matches every event of one run in the run log.
func RunLogFilter(runID string) string { return runLogPrefix + runID + ".>" }

// RunLogTransforms are the subject transforms (source, destination) that
// file the stream's events in the run log: one per shape of event name
// (promoted, build.requested).
func RunLogTransforms() [][2]string {
	var out [][2]string
	seen := map[int]bool{}
	for _, n := range Names() {
		tokens := strings.Count(string(n), ".") + 1
		if seen[tokens] {
			continue
		}
		seen[tokens] = true
		src, dest := subjectPrefix+strings.Repeat("*.", tokens)+"*", runLogPrefix+fmt.Sprintf("{{wildcard(%d)}}", tokens+1)
		for i := 1; i <= tokens; i++ {
			dest += fmt.Sprintf(".{{wildcard(%d)}}", i)
		}
		out = append(out, [2]string{src, dest})
	}
	return out
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
