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
	"strings"
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
	since, until    string
	query           api.HistoryQuery
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
	fs.BoolVar(&o.history, "history", false, "promotions and rejections, newest first, a page at a time")
	fs.StringVar(&o.query.Digest, "digest", "", "with --history: only entries about this digest")
	fs.StringVar(&o.query.Kind, "kind", "", "with --history: only "+strings.Join(api.HistoryKinds, ", "))
	fs.IntVar(&o.query.Limit, "limit", api.DefaultLimit, fmt.Sprintf("with --history: entries a page (at most %d)", api.MaxLimit))
	fs.StringVar(&o.query.Cursor, "cursor", "", "with --history: the page a previous one named as next")
	fs.StringVar(&o.since, "since", "", "with --history: only entries since then (an RFC 3339 time, or a duration before now such as 24h)")
	fs.StringVar(&o.until, "until", "", "with --history: only entries before then (the same)")
	fs.BoolVar(&o.asJSON, "json", false, "print JSON")
	return cmd
}

// run prints the records, or the history, the filters select.
func (o *recordsOptions) run(ctx context.Context, out io.Writer) error {
	if !o.history && (o.query.Digest != "" || o.query.Kind != "" || o.query.Cursor != "" || o.since != "" || o.until != "") {
		return errors.New("--digest, --kind, --since, --until and --cursor select history entries: add --history")
	}
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
		hq := o.query
		hq.Env, hq.Repo = o.env, o.repo
		if err := timeRange(&hq.ListQuery, o.since, o.until, time.Now()); err != nil {
			return err
		}
		var page api.Page[api.HistoryEntry]
		if _, err := c.do(ctx, http.MethodGet, withQuery("/v1/history", hq.Values()), nil, &page); err != nil {
			return err
		}
		if o.asJSON {
			return json.NewEncoder(out).Encode(page)
		}
		if err := printHistory(out, page.Items); err != nil {
			return err
		}
		if page.Next != "" {
			fmt.Fprintf(out, "older: the same command with --cursor %s\n", page.Next)
		}
		return nil
	}
	// Every record: one per environment and repository, a page at a time.
	recs := []events.Promotion{}
	for {
		var page api.Page[events.Promotion]
		if _, err := c.do(ctx, http.MethodGet, withQuery("/v1/promotions", q), nil, &page); err != nil {
			return err
		}
		recs = append(recs, page.Items...)
		if page.Next == "" {
			break
		}
		q.Set("cursor", page.Next)
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
		case h.Promotion != nil && h.Promotion.Release != nil && h.Promotion.Digest == "": // a release
			p := h.Promotion
			images := make([]string, len(p.Release.Images))
			for i, im := range p.Release.Images {
				images[i] = im.Repository + "@" + runs.ShortDigest(im.Digest)
			}
			detail := p.Release.Name + ": " + strings.Join(images, ", ")
			if p.Rollback {
				detail += ", a rollback: " + p.Reason
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.At.Format(time.RFC3339), h.Kind, p.Environment, "*", "", p.RequestedBy, detail)
		case h.Failure != nil && h.Failure.Release != nil:
			f := h.Failure
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s: %s\n", h.At.Format(time.RFC3339), h.Kind, f.Release.Environment, "*", "", "", runs.ReleaseFailure(*f.Release), f.Message)
		case h.Promotion != nil:
			p := h.Promotion
			detail := "previous " + cmp.Or(runs.ShortDigest(p.PreviousDigest), "none")
			if p.Release != nil {
				detail += ", in release " + p.Release.Name
			}
			if p.Rollback {
				detail += ", a rollback: " + p.Reason
			}
			if p.Emergency != "" {
				detail += ", an emergency " + p.Emergency
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.At.Format(time.RFC3339), h.Kind, p.Environment, p.Repository, runs.ShortDigest(p.Digest), p.RequestedBy, detail)
		case h.Deployment != nil:
			d := h.Deployment
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.At.Format(time.RFC3339), h.Kind, d.Environment, d.Repository, runs.ShortDigest(d.Digest), d.Deployer, d.Detail)
		case h.Freeze != nil:
			f := h.Freeze
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\tuntil %s: %s\n", h.At.Format(time.RFC3339), h.Kind, f.Environment, "*", "", f.By, f.Until.Format(time.RFC3339), f.Reason)
		case h.Pin != nil:
			p := h.Pin
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.At.Format(time.RFC3339), h.Kind, p.Environment, p.Repository, runs.ShortDigest(p.Digest), p.By, p.Reason)
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
	fmt.Fprintln(tw, "ENV\tREPOSITORY\tDIGEST\tCOMMIT\tTAG\tPROMOTED\tPREVIOUS\tBY")
	for _, p := range recs {
		tag := p.Tag
		if p.Location != "" { // the environment lives in another repository
			tag = p.Location + ":" + p.Tag
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Environment, p.Repository, p.Digest, cmp.Or(runs.ShortID(p.Commit), "-"), tag,
			p.PromotedAt.Format(time.RFC3339), cmp.Or(runs.ShortDigest(p.PreviousDigest), "none"), p.RequestedBy)
	}
	return tw.Flush()
}
