package runs

import (
	"cmp"
	"fmt"
	"strings"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
)

// Run is one run as people read it, folded from its events in stream
// order: what it targets, a timeline of its steps, how it ended, and the
// lines a terminal prints for each event. digestline ship and promote
// print runs through it, and the reporter's page and GET /v1/runs show
// them, so a run reads the same everywhere.
type Run struct {
	ID     string `json:"runId"`
	Target string `json:"target"`
	// Digest is what the run built, or asked to promote, once known.
	Digest string `json:"digest,omitempty"`
	// Status is running, promoted, superseded, rejected or failed.
	Status  string    `json:"status"`
	Detail  string    `json:"detail,omitempty"`
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
	Steps   []Step    `json:"steps"`
	TotalMS int64     `json:"totalMs"`
	// Source is what a build's run builds from, as a person reads it: a
	// git repository's URL, ref and commit; a directory; a tarball.
	Source string `json:"source,omitempty"`
	// Commit is the commit a git source's build checked out (what its
	// branch or tag named then), once built or failed after the checkout;
	// before that, what its push named (events.Source.Revision): the
	// commit, or an annotated tag's own id from the forges that send it.
	Commit string `json:"commit,omitempty"`
	// TraceID is the run's trace (W3C, 32 hex digits), from the
	// traceparent its events carry; "" when they carry none.
	TraceID string `json:"traceId,omitempty"`
	// AdmittedFrom is who asked an admitted image in (an admission's
	// sender: distribution, harbor, admit…); "" for a build's run.
	AdmittedFrom string `json:"admittedFrom,omitempty"`
	// Promotion is the record a promoted run ended with.
	Promotion *events.Promotion `json:"promotion,omitempty"`
	// Superseded says which newer run overtook a superseded one.
	Superseded *events.Supersession `json:"superseded,omitempty"`
	// Err is why a failed or rejected run ended.
	Err *Error `json:"error,omitempty"`
	// WaitsFor is the service a running run's next step is for: the
	// taker (events.Name.Taker) of its latest event that has one, by the
	// name of its durable consumer; "" once the run ended.
	WaitsFor string `json:"waitsFor,omitempty"`
	// Waiting says why a running run has had no event for a while, when
	// the service it waits for is not running: the reporter fills it as it
	// serves the run (its page, GET /v1/runs/{id}/summary); never folded
	// from events or stored.
	Waiting string `json:"waiting,omitempty"`
}

// Step is one bar of a run's timeline: the build, a push stage, the
// verification, the gates or the promotion, with when it started (from the
// run's start), how long it took and how it ended.
type Step struct {
	Name       string `json:"name"`
	Status     string `json:"status"` // ok, skipped, retrying, failed
	StartMS    int64  `json:"startMs"`
	DurationMS int64  `json:"durationMs"`
	// Attempt is the push stage's attempt (a retried stage has a step per
	// attempt); 0 for the other steps.
	Attempt int `json:"attempt,omitempty"`
	// Detail is what the step did, or why it failed; Class and Hint
	// classify a failure and say what to do next.
	Detail string `json:"detail,omitempty"`
	Class  string `json:"class,omitempty"`
	Hint   string `json:"hint,omitempty"`
}

// Run statuses.
const (
	Running  = "running"
	Promoted = "promoted"
	// Superseded is a run overtaken by a newer request for its tag: the
	// tag is at the newer run's digest, and nothing failed.
	Superseded = "superseded"
	Rejected   = "rejected"
	Failed     = "failed"
)

// Error is a run that ended without promotion: the event that ended it
// and its failure (a rejection's gate is its stage, of class "gate").
type Error struct {
	RunID   string         `json:"runId"`
	Event   events.Name    `json:"event"`
	Failure failure.Report `json:"failure"`
}

func (e *Error) Error() string {
	if e.Event == events.PromotionRejected {
		msg := fmt.Sprintf("rejected by gate %s: %s", e.Failure.Stage, e.Failure.Message)
		if e.Failure.Hint != "" {
			msg += "\nhint: " + e.Failure.Hint
		}
		return msg
	}
	return fmt.Sprintf("%s: %s", e.Event, e.Failure)
}

// Done reports whether the run has ended.
func (r *Run) Done() bool { return r.Status != "" && r.Status != Running }

// Outcome is how an ended run ended, as a person reads it: the promoted
// line, what superseded it, or its failure with what to do next; "" while
// it runs.
func (r *Run) Outcome() string {
	switch {
	case !r.Done():
		return ""
	case r.Promotion != nil:
		return strings.Join(promotedLines(*r.Promotion), "\n")
	case r.Err != nil:
		return r.Status + ": " + r.Err.Error()
	}
	return r.Status + ": " + r.Detail
}

// WaitLine is the line a follower prints when a run has had no event for
// quiet and waits for a service that is not running, why (the reporter's
// runs.Run.Waiting, or the bus's own answer).
func WaitLine(quiet time.Duration, why string) string {
	return fmt.Sprintf("[WAIT] nothing for %s: %s", quiet.Round(100*time.Millisecond), why)
}

// settle brings what follows from the run's events up to date after one
// of name: how long it took, and the service it waits for.
func (r *Run) settle(name events.Name) {
	r.TotalMS = max(r.Updated.Sub(r.Started).Milliseconds(), 1)
	if t := name.Taker(); t != "" {
		r.WaitsFor = t
	}
	if r.Done() {
		r.WaitsFor = ""
	}
}

// Add folds the run's next event into it and returns the lines a person
// reads for it ([BUILD], [STAGE], [VERIFY], promoted…). An event whose
// data does not decode is skipped: it was valid when it was stored, so
// only a newer producer's event can be one.
func (r *Run) Add(ev cloudevents.Event, name events.Name) []string {
	if r.ID == "" {
		r.ID, r.Status, r.Started = events.RunID(ev), Running, ev.Time()
	}
	r.TraceID = cmp.Or(r.TraceID, traceID(ev))
	if name == events.DeploymentReported {
		return deployLine(ev) // after the run ended: a line, and the run as it was
	}
	at := ev.Time()
	r.Updated = at
	defer r.settle(name)
	switch name {
	case events.BuildRequested, events.PromotionRequested, events.AdmissionRequested:
		return r.start(ev, name, at)
	case events.BuildCompleted:
		if b, err := events.Decode[events.BuildResult](ev); err == nil {
			r.Digest, r.Commit = b.Graph.Root.Digest.String(), b.Commit
			r.step(Step{Name: "build", Status: events.StatusOK, Detail: r.Digest}, at, 0)
			return []string{fmt.Sprintf("[BUILD] %s (%d descriptors)", b.Graph.Root.Digest, len(b.Graph.Descriptors))}
		}
	case events.PromotionApproved:
		if a, err := events.Decode[events.Approval](ev); err == nil {
			r.step(Step{Name: "gates", Status: events.StatusOK, Detail: "every gate passed"}, at, 0)
			line := fmt.Sprintf("[GATE] every gate passed: moving %s:%s from %s", a.Place(), a.Tag, cmp.Or(a.Previous, "nothing"))
			if a.Source != "" {
				line += fmt.Sprintf(", once %s@%s is copied there from %s and proven", a.Place(), a.Digest, a.Source)
			}
			return []string{line}
		}
	case events.PushStage:
		if s, err := events.Decode[events.StageReport](ev); err == nil {
			step := Step{Name: s.Stage, Status: s.Status, Attempt: s.Attempt, Detail: s.Did()}
			if s.Error != nil {
				step.Detail, step.Class, step.Hint = s.Error.Message, s.Error.Class, s.Error.Hint
			}
			r.step(step, at, stageStep(s))
			return []string{s.Line}
		}
	case events.PushCompleted:
		if p, err := events.Decode[events.PushResult](ev); err == nil {
			return []string{fmt.Sprintf("[PUSH] %s@%s: %d uploaded, %d existing, %d requests", p.Target, p.Digest, p.BlobsUploaded, p.BlobsExisting, p.Requests)}
		}
	case events.VerifyCompleted:
		if v, err := events.Decode[events.VerifyResult](ev); err == nil {
			detail := "every byte matches the build"
			if r.AdmittedFrom != "" && v.Promotion == nil {
				detail = "every byte proven as the registry serves it"
			}
			r.step(Step{Name: "verify", Status: events.StatusOK, Detail: detail}, at, 0)
			return v.Checks
		}
	case events.DriftDetected:
		if d, err := events.Decode[events.Drift](ev); err == nil {
			return []string{fmt.Sprintf("[DRIFT] tag %s points at %s, expected %s", d.Tag, d.Found, cmp.Or(d.Expected, "nothing"))}
		}
	case events.Promoted:
		if p, err := events.Decode[events.Promotion](ev); err == nil {
			return r.promoted(p, at)
		}
	case events.Superseded:
		if s, err := events.Decode[events.Supersession](ev); err == nil {
			line := fmt.Sprintf("superseded by run %s, requested later, which moved %s to %s", s.By, s.Tag, cmp.Or(s.ByDigest, "its digest"))
			r.step(Step{Name: s.Step, Status: events.StatusSkipped, Detail: line}, at, 0)
			r.Status, r.Detail, r.Superseded = Superseded, "superseded by run "+s.By, &s
			return []string{line}
		}
	case events.BuildFailed, events.PushFailed, events.VerifyFailed, events.PromotionRejected:
		r.fail(ev, name, at)
	case events.ReleaseRequested, events.ReleaseApproved, events.ReleaseMoved, events.ReleaseVerified:
		return r.addRelease(ev, name, at)
	}
	return nil
}

// start reads what the run targets from its first event, and returns
// its lines.
func (r *Run) start(ev cloudevents.Event, name events.Name, at time.Time) []string {
	switch name {
	case events.BuildRequested:
		if req, err := events.Decode[events.BuildRequest](ev); err == nil {
			r.Target, r.Source, r.Commit = req.Target, req.Source.String(), req.Source.Revision()
		}
	case events.PromotionRequested:
		if req, err := events.Decode[events.PromotionRequest](ev); err == nil {
			r.Target, r.Digest = req.Repository+"@"+req.Digest, req.Digest
		}
	case events.AdmissionRequested:
		if req, err := events.Decode[events.AdmissionRequest](ev); err == nil {
			r.Target, r.Digest, r.AdmittedFrom = req.Target, req.Digest, req.Sender
			line := fmt.Sprintf("[ADMIT] %s@%s, pushed by another tool (%s)", req.Target, req.Digest, req.Sender)
			r.step(Step{Name: "admit", Status: events.StatusOK, Detail: line}, at, 0)
			return []string{line}
		}
	}
	return nil
}

// promoted ends the run promoted, and returns its lines.
func (r *Run) promoted(p events.Promotion, at time.Time) []string {
	what := p.Environment + " " + p.Ref()
	if p.Release != nil && p.Digest == "" {
		what = fmt.Sprintf("%s release %s (%d images)", p.Environment, p.Release.Name, len(p.Release.Images))
	}
	r.step(Step{Name: "promote", Status: events.StatusOK, Detail: what}, at, 0)
	r.Status, r.Detail, r.Promotion = Promoted, what, &p
	return promotedLines(p)
}

// promotedLines are what a person reads of a promotion: one line, or for
// a release a line for it and one for each image.
func promotedLines(p events.Promotion) []string {
	if p.Release == nil || p.Digest != "" {
		return []string{promotedLine(p)}
	}
	line := fmt.Sprintf("released %s to %s: %d images", p.Release.Name, p.Environment, len(p.Release.Images))
	if p.Rollback {
		line += ", a rollback: " + p.Reason
	}
	lines := []string{line}
	for _, im := range p.Release.Images {
		lines = append(lines, "  "+promotedLine(im))
	}
	return lines
}

// promotedLine is what a person reads of a promotion.
func promotedLine(p events.Promotion) string {
	line := fmt.Sprintf("promoted %s %s (tag %s, previous %s)", p.Environment, p.Ref(), cmp.Or(p.Tag, "none"), cmp.Or(p.PreviousDigest, "none")) + p.BuiltFrom()
	if p.Source != "" {
		line += fmt.Sprintf(", copied from %s@%s and proven there", p.Source, p.Digest)
	}
	if p.Rollback {
		line += ", a rollback: " + p.Reason
	}
	if p.Emergency != "" {
		line += ", an emergency " + p.Emergency
	}
	return line
}

// deployLine is what a person reads of a deployer's report.
func deployLine(ev cloudevents.Event) []string {
	d, err := events.Decode[events.DeploymentReport](ev)
	if err != nil {
		return nil
	}
	return []string{fmt.Sprintf("[DEPLOY] %s %s@%s by %s: %s", d.Status, d.Repository, d.Digest, d.Deployer, cmp.Or(d.Detail, "no detail"))}
}

// fail ends the run with the failure or the rejection ev carries.
func (r *Run) fail(ev cloudevents.Event, name events.Name, at time.Time) {
	if name == events.PromotionRejected {
		if rj, err := events.Decode[events.Rejection](ev); err == nil {
			r.Status, r.Detail = Rejected, "rejected by gate "+rj.Gate
			r.Err = &Error{RunID: r.ID, Event: name, Failure: failure.Report{Class: "gate", Stage: rj.Gate, Message: rj.Reason, Hint: rj.Hint}}
			r.step(Step{Name: "gates", Status: events.StatusFailed, Detail: "gate " + rj.Gate + ": " + rj.Reason, Class: "gate", Hint: rj.Hint}, at, 0)
		}
		return
	}
	if f, err := events.Decode[events.Failure](ev); err == nil {
		r.Status, r.Err = Failed, &Error{RunID: r.ID, Event: name, Failure: f.Report}
		r.Commit = cmp.Or(f.Commit, r.Commit)
		r.Detail = string(name) + ": " + f.Class + " at " + cmp.Or(f.Path, f.Stage)
		if rel := f.Release; rel != nil {
			what := ReleaseFailure(*rel)
			r.Detail, r.Err.Failure.Message = what+": "+r.Detail, what+": "+f.Message
		}
		if name != events.PushFailed { // the push's failing stage has its bar and hint already
			r.step(Step{Name: cmp.Or(f.Stage, string(name)), Status: events.StatusFailed, Detail: f.Message, Class: f.Class, Hint: f.Hint}, at, 0)
		}
	}
}

// step adds a bar ending at at; one without a duration of its own lasted
// since the previous bar ended.
func (r *Run) step(s Step, at time.Time, dur time.Duration) {
	start := at.Add(-dur)
	if dur == 0 {
		start = r.Started
		if n := len(r.Steps); n > 0 {
			last := r.Steps[n-1]
			start = r.Started.Add(time.Duration(last.StartMS+last.DurationMS) * time.Millisecond)
		}
	}
	s.StartMS, s.DurationMS = start.Sub(r.Started).Milliseconds(), max(at.Sub(start).Milliseconds(), 1)
	r.Steps = append(r.Steps, s)
}

// stageStep is how long a push stage's step took: a retried stage has a
// step per attempt, each as long as that attempt alone, so that the
// waits between them show, and no attempt seems to take them.
func stageStep(s events.StageReport) time.Duration {
	if s.Attempt > 1 {
		return max(time.Duration(s.AttemptMS)*time.Millisecond, time.Millisecond)
	}
	return time.Duration(s.DurationMS) * time.Millisecond
}

// traceID is the trace id of the traceparent ev carries
// (00-<trace id>-<span id>-<flags>), or "".
func traceID(ev cloudevents.Event) string {
	tp := events.Extension(ev, events.ExtTraceParent)
	parts := strings.Split(tp, "-")
	if len(parts) != 4 || len(parts[1]) != 32 || strings.Trim(parts[1], "0") == "" {
		return ""
	}
	return parts[1]
}

// ShortID abbreviates a run's id as the CLI's tables and the reporter's
// pages show it: its first 8 characters, which the API, the page and run
// show take as any unique prefix of it (a 409 names the runs when two
// share it).
func ShortID(id string) string { return id[:min(len(id), 8)] }

// ShortDigest abbreviates a digest as people read it, sha256: and 12 hex
// digits ("" stays ""): the CLI's tables and the reporter's pages alike.
func ShortDigest(d string) string {
	if alg, hex, ok := strings.Cut(d, ":"); ok && len(hex) > 12 {
		return alg + ":" + hex[:12]
	}
	return d
}
