package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/services/reporter"
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

// run follow of a run that waits for a service that is not running says
// so, from the reporter's summary, instead of waiting in silence.
func TestRunFollowSaysWhichServiceARunWaitsFor(t *testing.T) {
	srv := bustest.NewServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { // the reporter alone: no builder ever ran
		done <- reporter.Run(ctx, reporter.Config{Deps: service.Deps{JetStream: srv.JetStream, Logger: slog.New(slog.DiscardHandler)}, Listener: ln})
	}()
	t.Cleanup(func() { cancel(); <-done })
	ev, err := events.NewEvent("/t", events.BuildRequested, "0ld0-run", "app", bustest.BuildRequest())
	if err != nil {
		t.Fatal(err)
	}
	ev.SetTime(time.Now().Add(-time.Minute))
	if err := bus.NewBus(srv.JetStream, "/t").Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}

	defer func(q time.Duration) { quietRun = q }(quietRun)
	quietRun = 200 * time.Millisecond
	var out, errOut bytes.Buffer
	cmd := newRootCommand()
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs([]string{"run", "follow", "0ld0", "--api", "http://" + ln.Addr().String(), "--timeout", "3s"})
	if err := cmd.ExecuteContext(ctx); err == nil || !strings.Contains(err.Error(), "has not ended") {
		t.Fatalf("run follow of a run that never ends: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "[WAIT] nothing for ") || strings.Count(out.String(), "[WAIT]") != 1 ||
		!strings.Contains(out.String(), "no builder has ever run on this bus") {
		t.Fatalf("run follow does not say once what the run waits for:\n%s", out.String())
	}
}

// run follow --commit waits for a commit's runs, and gives up saying what
// to check when none comes; what it cannot follow it refuses at once.
func TestFollowingACommitNoPushBuiltSaysWhatToCheck(t *testing.T) {
	s, _ := e2etest.StartStack(t)
	commit := strings.Repeat("5e", 20)
	out, err := cliErr(t, "run", "follow", "--commit", commit, "--timeout", "1500ms", "--api", s.APIURL)
	if err == nil || !strings.Contains(err.Error(), "no run of commit "+commit[:12]+" came") || !strings.Contains(err.Error(), "webhook") ||
		!strings.Contains(out, "waiting for the first") {
		t.Errorf("following a commit no push built: %v\n%s", err, out)
	}
	// An API that never answers is a wrong --api, said at once (one that
	// answered once and then does not is waited for: the monorepo test).
	start := time.Now()
	if _, err := cliErr(t, "run", "follow", "--commit", commit, "--timeout", "1m", "--api", "http://127.0.0.1:1"); err == nil ||
		!strings.Contains(err.Error(), "is digestline dev or the reporter running?") || time.Since(start) > 30*time.Second {
		t.Errorf("following a commit through an API that does not answer: %v after %s", err, time.Since(start))
	}
	for args, want := range map[string]string{
		"run follow":                          "which run?",
		"run follow 0ld0 --commit " + commit:  "not both",
		"run follow --commit " + commit[:12]:  "not a full commit id",
		"run follow --commit " + commit + "z": "not a full commit id",
	} {
		if _, err := cliErr(t, append(strings.Fields(args), "--api", s.APIURL)...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", args, err, want)
		}
	}
}

// run list and the runs page find runs, newest first, a page at a time:
// by status (a rejected one among promoted ones), by repository and by
// time, each with enough of its id for run show; a bad filter says what
// it takes.
func TestRunsAreFoundByStatusAndRepositoryOnTheCLIAndThePage(t *testing.T) {
	t.Setenv("DIGESTLINE_API_TOKEN", "")
	s, _ := e2etest.StartStack(t)
	other, out, err := s.Ship(t, e2etest.SourceDir(t, "other"), "other:1")
	if err != nil {
		t.Fatalf("ship other: %v\n%s", err, out)
	}
	repo := s.RegistryAddr + "/app"
	flags := []string{"--api", s.APIURL, "--repo", repo}
	var ids []string
	for i := 1; i <= 3; i++ {
		res, out, err := s.Ship(t, e2etest.SourceDir(t, fmt.Sprintf("v%d", i)), fmt.Sprintf("app:%d", i))
		if err != nil {
			t.Fatalf("ship v%d: %v\n%s", i, err, out)
		}
		ids = append(ids, res.RunID)
	}
	cli(t, "freeze", "dev", "--until", "1h", "--reason", "incident 7", "--api", s.APIURL, "--token-file", s.TokenFile)
	res, out, err := s.Ship(t, e2etest.SourceDir(t, "v4"), "app:4")
	if err == nil {
		t.Fatalf("a ship into a frozen dev passed:\n%s", out)
	}
	ids = append(ids, res.RunID)
	list := func(args ...string) string {
		return cli(t, append(append([]string{"run", "list"}, args...), flags...)...)
	}
	e2etest.WaitFor(t, "the four runs in run list", func() bool { return strings.Count(list(), "/app:") == 4 })

	lines := strings.Split(strings.TrimSpace(list()), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "RUN ") {
		t.Fatalf("run list:\n%s", strings.Join(lines, "\n"))
	}
	for i, want := range []string{"rejected", "promoted", "promoted", "promoted"} { // newest first
		id := ids[len(ids)-1-i]
		if f := strings.Fields(lines[i+1]); len(f) < 5 || f[0] != id[:8] || f[3] != want || f[4] != s.RegistryAddr+fmt.Sprintf("/app:%d", 4-i) {
			t.Errorf("line %d: %q, want run %s %s", i+1, lines[i+1], id[:8], want)
		}
	}
	if !strings.Contains(lines[1], "rejected by gate freeze") {
		t.Errorf("the rejected run does not say why: %q", lines[1])
	}
	if out := cli(t, "run", "show", ids[3][:8], "--api", s.APIURL); !strings.Contains(out, ids[3]) {
		t.Errorf("run show of the id run list printed:\n%s", out)
	}

	if out := list("--status", "rejected"); strings.Count(out, "app:") != 1 || !strings.Contains(out, ids[3][:8]) {
		t.Errorf("run list --status rejected:\n%s", out)
	}
	first := list("--limit", "3")
	cursor := lineOf(first, "older: the same command with --cursor ")
	if strings.Count(first, "app:") != 3 || cursor == "" {
		t.Fatalf("run list --limit 3 names no older page:\n%s", first)
	}
	older := list("--limit", "3", "--cursor", strings.TrimSpace(strings.TrimPrefix(cursor, "older: the same command with --cursor ")))
	if strings.Count(older, "app:") != 1 || !strings.Contains(older, ids[0][:8]) {
		t.Errorf("the older page:\n%s", older)
	}
	if out := list("--until", "1h"); strings.TrimSpace(out) != "no run matches" {
		t.Errorf("run list --until 1h (runs started over an hour ago):\n%s", out)
	}
	var page api.Page[runs.Run]
	if err := json.Unmarshal([]byte(list("--since", "1h", "--json")), &page); err != nil || len(page.Items) != 4 || page.Items[0].ID != ids[3] {
		t.Errorf("run list --json: %v, %+v", err, page)
	}
	for args, want := range map[string]string{"--status nope": "running, promoted, superseded, rejected, failed", "--since yesterday": `--since "yesterday"`} {
		if _, err := cliErr(t, append(append([]string{"run", "list"}, strings.Fields(args)...), flags...)...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("run list %s: %v, want an error saying %q", args, err, want)
		}
	}
	if out := cli(t, "run", "list", "--api", s.APIURL); !strings.Contains(out, other.RunID[:8]) || strings.Count(out, "/app:") != 4 {
		t.Errorf("run list of every repository:\n%s", out)
	}
	// records --history takes the same time range.
	if out := cli(t, "records", "--history", "--kind", "rejected", "--since", "1h", "--api", s.APIURL); !strings.Contains(out, "gate freeze") {
		t.Errorf("records --history --since 1h:\n%s", out)
	}
	if out := cli(t, "records", "--history", "--until", "1h", "--api", s.APIURL); strings.Contains(out, "promoted") || strings.Contains(out, "rejected") {
		t.Errorf("records --history --until 1h (entries over an hour old):\n%s", out)
	}
	if _, err := cliErr(t, "records", "--since", "1h", "--api", s.APIURL); err == nil || !strings.Contains(err.Error(), "add --history") {
		t.Errorf("records --since without --history: %v", err)
	}

	// The page: every run, a status's, a repository's (its runs' targets
	// link to it), and a bad filter's page says why.
	all := getPage(t, s.APIURL+"/runs")
	for _, id := range append(ids, other.RunID) {
		if !strings.Contains(all, "/runs/"+id) {
			t.Errorf("the runs page does not list run %s", id)
		}
	}
	if !strings.Contains(all, `href="/runs?repo=`+url.QueryEscape(repo)+`"`) {
		t.Errorf("the runs page does not link a run's target to its repository's runs:\n%s", all)
	}
	rejected := getPage(t, s.APIURL+"/runs?status=rejected")
	if !strings.Contains(rejected, "/runs/"+ids[3]) || strings.Contains(rejected, "/runs/"+ids[0]) || !strings.Contains(rejected, "<strong>rejected</strong>") {
		t.Errorf("the page of rejected runs:\n%s", rejected)
	}
	mine := getPage(t, s.APIURL+"/runs?repo="+url.QueryEscape(s.RegistryAddr+"/other"))
	if !strings.Contains(mine, "/runs/"+other.RunID) || strings.Contains(mine, "/runs/"+ids[0]) {
		t.Errorf("the page of other's runs:\n%s", mine)
	}
	if !strings.Contains(getPage(t, s.APIURL+"/"), `href="/runs?status=failed"`) {
		t.Error("the front page does not lead to the failed runs")
	}
	resp, err := http.Get(s.APIURL + "/runs?status=nope")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "status &#34;nope&#34;") {
		t.Errorf("GET /runs?status=nope: %d\n%s", resp.StatusCode, body)
	}
}
