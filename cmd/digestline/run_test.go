package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/runs"
)

// run show says which service a running run waits for, and nothing of it
// once the run ended.
func TestRunShowSaysWhatARunningRunWaitsFor(t *testing.T) {
	run := &runs.Run{ID: "r1", Status: runs.Running, WaitsFor: "pusher", Started: time.Now().Add(-time.Minute), Updated: time.Now().Add(-time.Minute)}
	var out bytes.Buffer
	printRun(&out, run, "http://api")
	if !strings.Contains(out.String(), "waits    for the pusher, its latest event 1m0s ago") {
		t.Fatalf("a running run:\n%s", out.String())
	}
	run.Status = runs.Promoted
	out.Reset()
	printRun(&out, run, "http://api")
	if strings.Contains(out.String(), "waits") {
		t.Fatalf("an ended run:\n%s", out.String())
	}
}
