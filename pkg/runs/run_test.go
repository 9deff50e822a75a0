package runs_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/runs"
)

// A running run waits for the service that takes its latest event that
// one takes — through the reports of the step it is at — and for none
// once it ended.
func TestARunWaitsForTheTakerOfItsLatestStep(t *testing.T) {
	start, err := events.NewEvent("/t", events.BuildRequested, "run-1", "app", bustest.BuildRequest())
	if err != nil {
		t.Fatal(err)
	}
	built, err := events.Follow("/t", start, events.BuildCompleted, "", events.BuildResult{})
	if err != nil {
		t.Fatal(err)
	}
	stage, err := events.Follow("/t", built, events.PushStage, "upload", events.StageReport{Stage: events.StageUpload, Status: events.StatusOK})
	if err != nil {
		t.Fatal(err)
	}
	failed, err := events.Follow("/t", stage, events.PushFailed, "", events.NewFailure(failure.Errorf(failure.Auth, "who", "no")))
	if err != nil {
		t.Fatal(err)
	}
	run := &runs.Run{}
	run.Add(start, events.BuildRequested)
	if run.WaitsFor != "builder" {
		t.Fatalf("after build.requested the run waits for %q, want the builder", run.WaitsFor)
	}
	run.Add(built, events.BuildCompleted)
	run.Add(stage, events.PushStage)
	if run.WaitsFor != "pusher" {
		t.Fatalf("after build.completed and a push stage the run waits for %q, want the pusher", run.WaitsFor)
	}
	run.Add(failed, events.PushFailed)
	if !run.Done() || run.WaitsFor != "" {
		t.Fatalf("a failed run (%s) waits for %q", run.Status, run.WaitsFor)
	}
}

// A run's blob check step says what its [STAGE] line says: how many of
// the blobs the registry already had (run show and the page showed it
// empty, the count being in the report's numbers, not its detail).
func TestABlobCheckStepCountsTheBlobsTheRegistryHas(t *testing.T) {
	start, err := events.NewEvent("/t", events.BuildRequested, "run-1", "app", bustest.BuildRequest())
	if err != nil {
		t.Fatal(err)
	}
	report := events.StageReport{Stage: events.StageBlobCheck, Status: events.StatusOK, Total: 3, Existing: 1}
	report.Line = report.RenderLine()
	stage, err := events.Follow("/t", start, events.PushStage, "blob-check", report)
	if err != nil {
		t.Fatal(err)
	}
	run := &runs.Run{}
	run.Add(start, events.BuildRequested)
	lines := run.Add(stage, events.PushStage)
	step := run.Steps[len(run.Steps)-1]
	if step.Name != events.StageBlobCheck || step.Detail != "1/3 exists" {
		t.Fatalf("the blob check step is %+v, want detail 1/3 exists", step)
	}
	if len(lines) != 1 || lines[0] != "[STAGE] blob check: 1/3 exists" {
		t.Fatalf("its line is %q", lines)
	}
}

// A retried stage's steps each take their own attempt's time, so that the
// waits between them show, not the stage's whole time so far.
func TestARetriedStagesStepsTakeTheirOwnAttemptsTime(t *testing.T) {
	start, err := events.NewEvent("/t", events.BuildRequested, "run-1", "app", bustest.BuildRequest())
	if err != nil {
		t.Fatal(err)
	}
	run := &runs.Run{}
	run.Add(start, events.BuildRequested)
	for _, r := range []events.StageReport{
		{Stage: events.StageManifestCheck, Status: events.StatusRetrying, Attempt: 1, DurationMS: 5, AttemptMS: 5, Error: &failure.Report{Class: "transport"}},
		{Stage: events.StageManifestCheck, Status: events.StatusOK, Attempt: 2, DurationMS: 1508, AttemptMS: 3},
	} {
		r.Line = r.RenderLine()
		ev, err := events.Follow("/t", start, events.PushStage, fmt.Sprint(r.Attempt), r)
		if err != nil {
			t.Fatal(err)
		}
		ev.SetTime(start.Time().Add(time.Duration(r.DurationMS) * time.Millisecond))
		run.Add(ev, events.PushStage)
	}
	first, second := run.Steps[len(run.Steps)-2], run.Steps[len(run.Steps)-1]
	if first.StartMS != 0 || first.DurationMS != 5 || second.StartMS != 1505 || second.DurationMS != 3 {
		t.Fatalf("the attempts' steps: %+v and %+v, want +0 for 5 ms and +1505 for 3 ms", first, second)
	}
}

// A build's run says what it builds from, as run show and the page print
// it: for a push, the repository, the ref and the commit, and never a
// credential written into the URL.
func TestARunSaysWhatItBuildsFrom(t *testing.T) {
	for src, want := range map[events.Source]string{
		{Kind: events.SourceGit, URL: "https://github.com/acme/app.git", Ref: "refs/heads/main", Rev: "0123456789abcdef0123456789abcdef01234567"}: "https://github.com/acme/app.git refs/heads/main at 0123456789ab",
		{Kind: events.SourceGit, URL: "https://x-access-token:ghs_secret@github.com/acme/app.git", Rev: "v1.2.0"}:                                 "https://github.com/acme/app.git at v1.2.0",
		{Kind: events.SourceGit, URL: "git@github.com:acme/app.git", Ref: "refs/tags/v1", Rev: "refs/tags/v1"}:                                    "git@github.com:acme/app.git refs/tags/v1",
		{Kind: events.SourceObject, Object: "sha256:" + strings.Repeat("ab", 32)}:                                                                 "tarball sha256:abababababab",
		{Kind: events.SourceDir, Path: "/src/app"}:                                                                                                "directory /src/app",
	} {
		req := bustest.BuildRequest()
		req.Source = src
		start, err := events.NewEvent("/t", events.BuildRequested, "run-1", "app", req)
		if err != nil {
			t.Fatal(err)
		}
		run := &runs.Run{}
		run.Add(start, events.BuildRequested)
		if run.Source != want {
			t.Errorf("%+v: the run's source reads %q, want %q", src, run.Source, want)
		}
	}
}

// A run of a git source names the commit its build checked out: from
// build.completed, or from build.failed when the build failed after its
// checkout; before that, what its push named in full (a tag's push may
// name the annotated tag's own id).
func TestARunNamesTheCommitItsBuildCheckedOut(t *testing.T) {
	commit := strings.Repeat("c0", 20)
	start, err := events.NewEvent("/t", events.BuildRequested, "run-1", "app", events.BuildRequest{Target: "r.example/app:v1",
		Source: events.Source{Kind: events.SourceGit, URL: "https://git.example/app.git", Ref: "refs/tags/v1", Rev: strings.Repeat("7a", 20)}})
	if err != nil {
		t.Fatal(err)
	}
	built, err := events.Follow("/t", start, events.BuildCompleted, "", events.BuildResult{Commit: commit})
	if err != nil {
		t.Fatal(err)
	}
	f := events.NewFailure(failure.Errorf(failure.Input, "fix it", "source.dir %q: no such directory", "svc"))
	f.Commit = commit
	failed, err := events.Follow("/t", start, events.BuildFailed, "", f)
	if err != nil {
		t.Fatal(err)
	}
	for end, ev := range map[events.Name]cloudevents.Event{events.BuildCompleted: built, events.BuildFailed: failed} {
		run := &runs.Run{}
		run.Add(start, events.BuildRequested)
		if want := strings.Repeat("7a", 20); run.Commit != want {
			t.Fatalf("before it is built the run names %q, want what its push named, %s", run.Commit, want)
		}
		run.Add(ev, end)
		if run.Commit != commit {
			t.Errorf("after %s the run names commit %q, want %s", end, run.Commit, commit)
		}
	}

	// A push names the commit (or the tag object) in full: the run names
	// it from its start; a branch's name or a short id it does not.
	for src, want := range map[events.Source]string{
		{Kind: events.SourceGit, URL: "https://git.example/app.git", Ref: "refs/heads/main", Rev: commit}: commit,
		{Kind: events.SourceGit, URL: "https://git.example/app.git", Ref: "refs/tags/v1", Rev: commit}:    commit,
		{Kind: events.SourceGit, URL: "https://git.example/app.git", Rev: commit}:                         commit,
		{Kind: events.SourceGit, URL: "https://git.example/app.git", Ref: "refs/heads/main", Rev: "main"}: "",
		{Kind: events.SourceGit, URL: "https://git.example/app.git", Rev: commit[:12]}:                    "",
		{Kind: events.SourceGit, URL: "https://git.example/app.git", Rev: strings.ToUpper(commit)}:        "",
	} {
		start, err := events.NewEvent("/t", events.BuildRequested, "run-2", "app", events.BuildRequest{Target: "r.example/app:main", Source: src})
		if err != nil {
			t.Fatal(err)
		}
		run := &runs.Run{}
		run.Add(start, events.BuildRequested)
		if run.Commit != want {
			t.Errorf("%+v: the run starts naming commit %q, want %q", src, run.Commit, want)
		}
	}
}
