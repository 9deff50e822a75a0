package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/runs"
)

// commitPoll is how often following a commit asks for its runs again.
const commitPoll = time.Second

// followCommit follows every run of a commit until each has ended: a line
// as each run is found and one as it ends (with --json, each ended run's
// summary as a JSON line); it exits 2 when any failed or was refused. The
// runs are those GET /v1/runs?commit= lists. It waits for the first (the
// push's webhook may still be on its way), and knows it has seen them all
// from what the webhooks recorded of the commit's pushes (GET
// /v1/pushes/{commit}): their runs, or why they built none, which ends
// the follow at once. Without that record (runs a CloudEvent started), it
// asks once more after every run listed has ended, so that a run started
// a moment later is followed too.
func (o *runOptions) followCommit(ctx context.Context, commit string, out, errOut io.Writer) error {
	commit = strings.ToLower(commit)
	if !events.IsCommitID(commit) {
		return fmt.Errorf("--commit %q is not a full commit id: give all its hex digits, as git rev-parse HEAD prints them", commit)
	}
	c, err := o.api.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	notes := out
	if o.asJSON { // its standard output is runs, one per line
		notes = errOut
	}
	fmt.Fprintf(notes, "following the runs of commit %s\n  page %s/runs?commit=%s\n", commit, c.base, commit)
	f := &commitFollower{out: out, notes: notes, asJSON: o.asJSON, ended: map[string]bool{}}
	tick := time.NewTicker(commitPoll)
	defer tick.Stop()
	var outage apiOutage
	for settled := false; ; {
		done, code, err := f.poll(ctx, c, commit, settled)
		switch {
		case err != nil && ctx.Err() != nil: // the timeout, below
		case outage.wait(code, err, notes): // the runs go on, and so does the follow
		case err != nil:
			return err
		case done && len(f.ended) == 0:
			return nil // the pushes built nothing, and f said why
		case done:
			return f.result(commit)
		}
		settled = err == nil && len(f.ended) > 0 && f.running() == 0
		select {
		case <-ctx.Done():
			return f.notEnded(commit, ctx.Err())
		case <-tick.C:
		}
	}
}

// poll reads the commit's runs and prints what is new, and reports
// whether following is done: every run ended, and the webhooks' record of
// the commit's pushes names no other (without a record, every run ended
// at the poll before too: settled), or no run and the pushes built
// nothing.
// A request that failed says its status (0: no answer).
func (f *commitFollower) poll(ctx context.Context, c *apiClient, commit string, settled bool) (bool, int, error) {
	list, code, err := commitRuns(ctx, c, commit)
	if err != nil {
		return false, code, err
	}
	allEnded := f.saw(list)
	if len(list) > 0 && !allEnded {
		return false, code, nil
	}
	var p api.Push
	code, err = c.do(ctx, http.MethodGet, "/v1/pushes/"+commit, nil, &p)
	switch {
	case code == http.StatusNotFound: // no delivery recorded (yet): runs a CloudEvent started, say
		return allEnded && settled, code, nil
	case err != nil:
		return false, code, err
	case len(list) == 0 && len(p.Runs) == 0 && len(p.Ignored) > 0:
		fmt.Fprintf(f.notes, "the push of commit %s built nothing: %s\n", commit[:12], strings.Join(p.Ignored, "; "))
		return true, code, nil
	}
	return allEnded && !slices.ContainsFunc(p.Runs, func(id string) bool { _, found := f.ended[id]; return !found }), code, nil
}

// commitRuns reads every run of commit, newest filed first; a request
// that failed says its status (0: no answer).
func commitRuns(ctx context.Context, c *apiClient, commit string) ([]runs.Run, int, error) {
	q := api.RunQuery{ListQuery: api.ListQuery{Limit: api.MaxLimit}, Commit: commit}
	var all []runs.Run
	for {
		var page api.Page[runs.Run]
		code, err := c.do(ctx, http.MethodGet, withQuery("/v1/runs", q.Values()), nil, &page)
		if err != nil {
			return nil, code, err
		}
		all = append(all, page.Items...)
		if page.Next == "" {
			return all, code, nil
		}
		q.Cursor = page.Next
	}
}

// commitFollower is what following a commit has seen of its runs.
type commitFollower struct {
	out, notes io.Writer
	asJSON     bool
	ended      map[string]bool // by run id: the runs found, and whether each ended
	waitSaid   bool
	failed     []string // the runs that failed or were refused
}

// saw prints what is new in list (a run found, a run ended), the oldest
// run first, and reports whether every run listed has ended (none listed:
// not yet).
func (f *commitFollower) saw(list []runs.Run) bool {
	if len(list) == 0 && !f.waitSaid {
		fmt.Fprintln(f.notes, "no run of it yet: waiting for the first (a push's webhook starts them)")
		f.waitSaid = true
	}
	for _, r := range slices.Backward(list) {
		ended, found := f.ended[r.ID]
		if !found && !r.Done() {
			fmt.Fprintf(f.notes, "[RUN] %s %s: %s\n", runs.ShortID(r.ID), r.Target, r.Status)
		}
		if r.Done() && !ended {
			f.end(r)
		}
		f.ended[r.ID] = r.Done()
	}
	return len(list) > 0 && !slices.ContainsFunc(list, func(r runs.Run) bool { return !r.Done() })
}

// end prints how a run ended.
func (f *commitFollower) end(r runs.Run) {
	if r.Status == runs.Failed || r.Status == runs.Rejected {
		f.failed = append(f.failed, runs.ShortID(r.ID))
	}
	if f.asJSON {
		b, _ := json.Marshal(r) // a struct of plain fields
		fmt.Fprintf(f.out, "%s\n", b)
		return
	}
	fmt.Fprintf(f.out, "[RUN] %s %s: %s\n", runs.ShortID(r.ID), r.Target, r.Outcome())
}

// result is how the commit's runs ended: nil when each was promoted or
// superseded, else exit status 2 naming the ones that were not.
func (f *commitFollower) result(commit string) error {
	if len(f.failed) == 0 {
		fmt.Fprintf(f.notes, "every run of commit %s ended well: %d promoted or superseded\n", commit[:12], len(f.ended))
		return nil
	}
	return &exitCodeError{code: 2, err: fmt.Errorf("%d of the %d runs of commit %s failed or were refused: %s (digestline run show RUNID says why)",
		len(f.failed), len(f.ended), commit[:12], strings.Join(f.failed, ", "))}
}

// running is how many of the runs found have not ended.
func (f *commitFollower) running() int {
	n := 0
	for _, ended := range f.ended {
		if !ended {
			n++
		}
	}
	return n
}

// notEnded is the error of a follow that gave up before every run ended.
func (f *commitFollower) notEnded(commit string, why error) error {
	running := f.running()
	if len(f.ended) == 0 {
		return fmt.Errorf("no run of commit %s came: %w (is the forge's webhook set up, and did the push change what a rule builds? the builder's log says what each delivery started)", commit[:12], why)
	}
	return fmt.Errorf("%d of the %d runs of commit %s have not ended: %w (they go on: digestline run follow --commit %s)", running, len(f.ended), commit[:12], why, commit)
}
