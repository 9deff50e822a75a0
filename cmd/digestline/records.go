package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/spf13/cobra"
)

// recordsOptions are records' flags.
type recordsOptions struct {
	api             apiOptions
	env, repo       string
	history, asJSON bool
}

func newRecordsCommand() *cobra.Command {
	o := &recordsOptions{}
	cmd := &cobra.Command{
		Use:   "records",
		Short: "List what is promoted where (or, with --history, every promotion and rejection)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), cmd.OutOrStdout()) },
	}
	fs := cmd.Flags()
	o.api.addFlags(fs)
	fs.StringVar(&o.env, "env", "", "only this environment")
	fs.StringVar(&o.repo, "repo", "", "only this repository (registry/path)")
	fs.BoolVar(&o.history, "history", false, "every promotion and rejection, oldest first")
	fs.BoolVar(&o.asJSON, "json", false, "print JSON")
	return cmd
}

// run prints the records, or the history, the filters select.
func (o *recordsOptions) run(ctx context.Context, out io.Writer) error {
	c, err := o.api.client()
	if err != nil {
		return err
	}
	q := url.Values{}
	if o.env != "" {
		q.Set("env", o.env)
	}
	if o.repo != "" {
		q.Set("repo", o.repo)
	}
	if o.history {
		var hist []api.HistoryEntry
		if _, err := c.do(ctx, http.MethodGet, withQuery("/v1/history", q), nil, &hist); err != nil {
			return err
		}
		if o.asJSON {
			return json.NewEncoder(out).Encode(hist)
		}
		return printHistory(out, hist)
	}
	var recs []events.Promotion
	if _, err := c.do(ctx, http.MethodGet, withQuery("/v1/promotions", q), nil, &recs); err != nil {
		return err
	}
	if o.asJSON {
		return json.NewEncoder(out).Encode(recs)
	}
	return printRecords(out, recs)
}

// withQuery is path with q, when q has anything.
func withQuery(path string, q url.Values) string {
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

// printHistory prints promotions and rejections as a table, one a line.
func printHistory(out io.Writer, hist []api.HistoryEntry) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tKIND\tENV\tREPOSITORY\tDIGEST\tBY\tDETAIL")
	for _, h := range hist {
		switch {
		case h.Promotion != nil:
			p := h.Promotion
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\tprevious %s\n", h.At.Format(time.RFC3339), h.Kind, p.Environment, p.Repository, runs.ShortDigest(p.Digest), p.RequestedBy, cmp.Or(runs.ShortDigest(p.PreviousDigest), "none"))
		case h.Rejection != nil:
			r := h.Rejection
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\tgate %s: %s\n", h.At.Format(time.RFC3339), h.Kind, r.Environment, r.Repository, runs.ShortDigest(r.Digest), r.RequestedBy, r.Gate, r.Reason)
		}
	}
	return tw.Flush()
}

// printRecords prints the current records as a table, one a line.
func printRecords(out io.Writer, recs []events.Promotion) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENV\tREPOSITORY\tDIGEST\tTAG\tPROMOTED\tPREVIOUS\tBY")
	for _, p := range recs {
		tag := p.Tag
		if p.Location != "" { // the environment lives in another repository
			tag = p.Location + ":" + p.Tag
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Environment, p.Repository, p.Digest, tag, p.PromotedAt.Format(time.RFC3339), cmp.Or(runs.ShortDigest(p.PreviousDigest), "none"), p.RequestedBy)
	}
	return tw.Flush()
}
