package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/spf13/cobra"
)

// runOptions are the flags of run show and run follow.
type runOptions struct {
	api     apiOptions
	asJSON  bool
	timeout time.Duration
	commit  string
}

func newRunCommand() *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run COMMAND",
		Short: "List runs, or show or follow one: its stages, how it ended, its trace and its page",
	}
	show := &cobra.Command{
		Use:   "show [RUNID]",
		Short: "Print a run (any unique prefix of its id, 4 characters or more; the latest without one): target, status, a table of its steps with hints, its trace and its events",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.show(cmd.Context(), strings.Join(args, ""), cmd.OutOrStdout())
		},
	}
	o.api.addFlags(cmd.PersistentFlags())
	show.Flags().BoolVar(&o.asJSON, "json", false, "print the run (steps, status, trace id) as JSON")
	follow := &cobra.Command{
		Use:   "follow RUNID | --commit SHA",
		Short: "Print a run's lines from its start and live until it ends, or how each run of a commit ends; exits 0 when promoted or superseded, 2 when one failed or was rejected",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case o.commit != "" && len(args) > 0:
				return errors.New("follow a run or a commit's runs, not both: give RUNID or --commit")
			case o.commit != "":
				return o.followCommit(cmd.Context(), o.commit, cmd.OutOrStdout(), cmd.ErrOrStderr())
			case len(args) == 0:
				return errors.New("which run? give its id (digestline run list lists them), or --commit SHA for every run of a commit")
			}
			return o.follow(cmd.Context(), args[0], cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	follow.Flags().DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up following after this long")
	follow.Flags().BoolVar(&o.asJSON, "json", false, "print each of the run's events as a JSON line (structured CloudEvents); with --commit, each run's summary as it ends")
	follow.Flags().StringVar(&o.commit, "commit", "", "follow every run of this git commit (its full id: git rev-parse HEAD) until each has ended, waiting for the first")
	cmd.AddCommand(newRunListCommand(&o.api), show, follow)
	return cmd
}

// show reads the run from the API, folds it and prints it.
func (o *runOptions) show(ctx context.Context, id string, out io.Writer) error {
	c, err := o.api.client()
	if err != nil {
		return err
	}
	if id == "" {
		var latest api.Page[runs.Run]
		if _, err := c.do(ctx, http.MethodGet, "/v1/runs?limit=1", nil, &latest); err != nil {
			return err
		}
		if len(latest.Items) == 0 {
			return errors.New("no run yet: digestline ship DIR REF starts one")
		}
		id = latest.Items[0].ID
	}
	var raw []json.RawMessage
	if _, err := c.do(ctx, http.MethodGet, "/v1/runs/"+url.PathEscape(id), nil, &raw); err != nil {
		// Past the events' retention a run keeps its summary.
		var run runs.Run
		if _, serr := c.do(ctx, http.MethodGet, "/v1/runs/"+url.PathEscape(id)+"/summary", nil, &run); serr != nil {
			return err
		}
		return o.print(out, &run, nil, c.base, "its events are past the stream's retention: this is its summary")
	}
	run, lines := &runs.Run{}, []string{}
	for _, r := range raw {
		ev, name, err := events.Parse(r)
		if err != nil {
			continue // a newer producer's event: the API serves only valid ones
		}
		lines = append(lines, run.Add(ev, name)...)
	}
	return o.print(out, run, lines, c.base, "")
}

// print prints a run (JSON with --json): its head and steps, then its
// events' lines, or note when it has none to show.
func (o *runOptions) print(out io.Writer, run *runs.Run, lines []string, base, note string) error {
	if o.asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(run)
	}
	printRun(out, run, base)
	fmt.Fprintln(out)
	if note != "" {
		fmt.Fprintln(out, note)
	}
	for _, l := range lines {
		fmt.Fprintln(out, l)
	}
	return nil
}

// printRun prints a run's head and its steps as a table.
func printRun(out io.Writer, run *runs.Run, apiBase string) {
	fmt.Fprintf(out, "run %s  %s", run.ID, strings.ToUpper(run.Status))
	if run.Detail != "" {
		fmt.Fprintf(out, "  %s", run.Detail)
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "  target   %s\n", run.Target)
	if run.Source != "" {
		fmt.Fprintf(out, "  source   %s\n", run.Source)
	}
	if run.Commit != "" {
		fmt.Fprintf(out, "  commit   %s\n", run.Commit)
	}
	fmt.Fprintf(out, "  started  %s, took %s\n", run.Started.UTC().Format(time.RFC3339), time.Duration(run.TotalMS)*time.Millisecond)
	if !run.Done() && run.WaitsFor != "" {
		fmt.Fprintf(out, "  waits    for the %s, its latest event %s ago (its page says when the %s is not running)\n",
			run.WaitsFor, time.Since(run.Updated).Round(time.Second), run.WaitsFor)
	}
	if run.TraceID != "" {
		fmt.Fprintf(out, "  trace    %s\n", cmp.Or(traceLink(run.TraceID), run.TraceID))
	}
	fmt.Fprintf(out, "  page     %s/runs/%s\n", apiBase, run.ID)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tRESULT\tATTEMPT\tSTART\tTOOK\tCLASS\tDETAIL")
	for _, s := range run.Steps {
		attempt := ""
		if s.Attempt > 1 || s.Status == events.StatusRetrying {
			attempt = fmt.Sprint(s.Attempt)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t+%s\t%s\t%s\t%s\n", s.Name, s.Status, attempt, time.Duration(s.StartMS)*time.Millisecond,
			time.Duration(s.DurationMS)*time.Millisecond, cmp.Or(s.Class, "-"), s.Detail)
		if s.Hint != "" {
			fmt.Fprintf(tw, "\t\t\t\t\t\thint: %s\n", s.Hint)
		}
	}
	_ = tw.Flush()
}

// traceLink is the trace's page from DIGESTLINE_TRACE_URL (a template with
// {traceId}, e.g. http://jaeger:16686/trace/{traceId}), or "".
func traceLink(traceID string) string {
	tmpl := os.Getenv("DIGESTLINE_TRACE_URL")
	if tmpl == "" {
		return ""
	}
	return strings.ReplaceAll(tmpl, "{traceId}", traceID)
}

// follow prints the run's lines from the API, from its start and as
// they are stored, until the run ends; a run that ends without promotion
// exits 2. What a quiet run waits for goes to out with the lines, or to
// errOut with --json.
func (o *runOptions) follow(ctx context.Context, id string, out, errOut io.Writer) error {
	c, err := o.api.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	var first []json.RawMessage
	if _, err := c.do(ctx, http.MethodGet, "/v1/runs/"+url.PathEscape(id), nil, &first); err != nil {
		return err
	}
	if len(first) == 0 {
		return fmt.Errorf("run %s has no events yet", id)
	}
	if ev, _, err := events.Parse(first[0]); err == nil { // the whole id, when id is a prefix of it
		id = events.RunID(ev)
	}
	if !o.asJSON {
		fmt.Fprintf(out, "following run %s\n  page %s/runs/%s\n", id, c.base, id)
	}
	notes := out
	if o.asJSON { // its standard output is events, one per line
		notes = errOut
	}
	return pollRun(ctx, c, id, notes, func(raw json.RawMessage, lines []string) {
		if o.asJSON {
			_, _ = out.Write(append(raw, '\n'))
			return
		}
		for _, l := range lines {
			fmt.Fprintln(out, l)
		}
	})
}
