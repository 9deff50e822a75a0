package main

import (
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
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"
)

// gcOptions are gc's flags.
type gcOptions struct {
	api                apiOptions
	keepLast, keepDays int
	dryRun, json       bool
	timeout            time.Duration
}

func newGCCommand() *cobra.Command {
	o := &gcOptions{api: apiOptions{write: true}}
	cmd := &cobra.Command{
		Use:   "gc REGISTRY/REPOSITORY [--keep-last N] [--keep-days D] [--dry-run] [--json]",
		Short: "Delete what no environment holds or may roll back to, with its signatures, SBOMs and attestations, never what it may need",
		Long: "gc asks the reporter (POST /v1/gc) to collect the repository's garbage. It never deletes a digest an environment\n" +
			"holds, or held within its rollback depth (rollbackDepth in the policy, default 5), one pinned by a rollback,\n" +
			"the digests of the last --keep-last runs, one verified within --keep-days, one this pipeline never verified, nor\n" +
			"anything in the tree of a digest it keeps (an index's platform manifests, and every referrer, nested: through\n" +
			"the referrers API, its fallback tag or cosign's tags). It deletes the rest, each digest with its tree, referrers\n" +
			"before their subjects, so that nothing left refers to what is gone; each digest is checked against the records\n" +
			"again right before it goes. --dry-run prints the plan: every manifest, kept or deleted, and why. Every deletion\n" +
			"is a digest.deleted event and in the digest's history. The registry must serve deletes (the distribution\n" +
			"registry: storage.delete.enabled); its own garbage collection then reclaims the blobs.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), args[0], cmd.OutOrStdout()) },
	}
	fs := cmd.Flags()
	o.api.addFlags(fs)
	fs.IntVar(&o.keepLast, "keep-last", api.DefaultKeepLast, "keep the digests of the repository's last N runs")
	fs.IntVar(&o.keepDays, "keep-days", api.DefaultKeepDays, "keep the digests verified within the last D days")
	fs.BoolVar(&o.dryRun, "dry-run", false, "print the plan, and delete nothing")
	fs.BoolVar(&o.json, "json", false, "print the report as JSON (GET the same from POST /v1/gc)")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up waiting for the collection after this long")
	return cmd
}

func (o *gcOptions) run(ctx context.Context, repository string, out io.Writer) error {
	repo, err := name.NewRepository(repository)
	if err != nil {
		return fmt.Errorf("repository %q: want registry/path: %w", repository, err)
	}
	if o.keepLast < 0 || o.keepDays < 0 {
		return fmt.Errorf("--keep-last %d --keep-days %d: both are 0 or more", o.keepLast, o.keepDays)
	}
	c, err := o.api.writer()
	if err != nil {
		return err
	}
	c.http.Timeout = o.timeout
	var rep api.GCReport
	body := api.GCRequest{Repository: repo.Name(), KeepLast: &o.keepLast, KeepDays: &o.keepDays, DryRun: o.dryRun}
	if _, err := c.do(ctx, http.MethodPost, "/v1/gc", body, &rep); err != nil {
		return err
	}
	if o.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return printGC(out, rep)
}

// printGC prints a collection's report: a line per manifest, then the counts.
func printGC(out io.Writer, rep api.GCReport) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACTION\tDIGEST\tKIND\tTAGS\tWHY")
	for _, it := range rep.Items {
		kind := it.Kind
		if it.Subject != "" {
			kind += " of " + runs.ShortDigest(it.Subject)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", it.Action, runs.ShortDigest(it.Digest), kind, strings.Join(it.Tags, ","), it.Why)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	deleting := 0
	for _, it := range rep.Items {
		if it.Action == api.GCDelete {
			deleting++
		}
	}
	if rep.DryRun {
		_, err := fmt.Fprintf(out, "dry run of %s: %d manifests kept, %d would be deleted (run %s)\n", rep.Repository, rep.Kept, deleting, rep.RunID)
		return err
	}
	if rep.Untagged > 0 {
		_, err := fmt.Fprintf(out, "gc of %s: %d manifests kept, %d untagged or left, %d skipped: %s deletes tags only; its own garbage collection must remove them (run %s)\n",
			rep.Repository, rep.Kept, rep.Untagged, rep.Skipped, strings.SplitN(rep.Repository, "/", 2)[0], rep.RunID)
		return err
	}
	_, err := fmt.Fprintf(out, "gc of %s: %d manifests kept, %d deleted, %d skipped (run %s)\n", rep.Repository, rep.Kept, rep.Deleted, rep.Skipped, rep.RunID)
	return err
}
