package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/spf13/cobra"
)

// runListOptions are the flags of run list.
type runListOptions struct {
	api          *apiOptions // run's, on all its commands
	query        api.RunQuery
	since, until string
	asJSON       bool
}

func newRunListCommand(apiOpts *apiOptions) *cobra.Command {
	o := &runListOptions{api: apiOpts}
	cmd := &cobra.Command{
		Use:   "list [--status S] [--repo R] [--digest D] [--commit C] [--since T]",
		Short: "List runs, newest first, a page at a time: each one's id, start, status, target and how it ended; with --status other than running, newest ended first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), time.Now(), cmd.OutOrStdout())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.query.Status, "status", "", "only the runs with this status: "+strings.Join(api.RunStatuses, ", "))
	fs.StringVar(&o.query.Repo, "repo", "", "only the runs of this repository (registry/path)")
	fs.StringVar(&o.query.Digest, "digest", "", "only the runs of this digest (sha256:…)")
	fs.StringVar(&o.query.Commit, "commit", "", "only the runs that built this git commit (its full id: git rev-parse HEAD)")
	fs.StringVar(&o.since, "since", "", "only the runs since then: an RFC 3339 time, or a duration before now such as 24h")
	fs.StringVar(&o.until, "until", "", "only the runs before then: an RFC 3339 time, or a duration before now")
	fs.IntVar(&o.query.Limit, "limit", 20, fmt.Sprintf("runs a page (at most %d)", api.MaxLimit))
	fs.StringVar(&o.query.Cursor, "cursor", "", "the page a previous one named as older")
	fs.BoolVar(&o.asJSON, "json", false, "print the page as JSON (GET /v1/runs answers the same)")
	return cmd
}

// run prints one page of the runs the filters select.
func (o *runListOptions) run(ctx context.Context, now time.Time, out io.Writer) error {
	q := o.query
	if err := timeRange(&q.ListQuery, o.since, o.until, now); err != nil {
		return err
	}
	c, err := o.api.client()
	if err != nil {
		return err
	}
	var page api.Page[runs.Run]
	if _, err := c.do(ctx, http.MethodGet, withQuery("/v1/runs", q.Values()), nil, &page); err != nil {
		return err
	}
	if o.asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(page)
	}
	if len(page.Items) == 0 && page.Next == "" {
		_, err := fmt.Fprintln(out, "no run matches")
		return err
	}
	if err := printRuns(out, page.Items, now); err != nil {
		return err
	}
	if page.Next != "" {
		_, err = fmt.Fprintf(out, "older: the same command with --cursor %s\n", page.Next)
	}
	return err
}

// printRuns prints runs as a table, one a line: enough of each id for run
// show, and for a running run the service it waits for.
func printRuns(out io.Writer, list []runs.Run, now time.Time) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tSTARTED\tTOOK\tSTATUS\tTARGET\tDETAIL")
	for _, r := range list {
		took := (time.Duration(r.TotalMS) * time.Millisecond).String()
		detail := r.Detail
		if !r.Done() {
			took = now.Sub(r.Started).Round(time.Second).String() + " so far"
			if r.WaitsFor != "" {
				detail = cmp.Or(r.Waiting, "waits for the "+r.WaitsFor)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", runs.ShortID(r.ID), r.Started.UTC().Format(time.RFC3339), took, r.Status, r.Target, detail)
	}
	return tw.Flush()
}
