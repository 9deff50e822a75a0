package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"
)

// rollbackOptions are rollback's flags.
type rollbackOptions struct {
	api        apiOptions
	to, reason string
	release    string
	timeout    time.Duration
	noWait     bool
}

func newRollbackCommand() *cobra.Command {
	o := &rollbackOptions{api: apiOptions{write: true}}
	cmd := &cobra.Command{
		Use:   "rollback ENV REPOSITORY --reason TEXT [--to sha256:...] | rollback ENV --release NAME --reason TEXT",
		Short: "Move an environment back to the digest it held before (or to one it held) through the gates, and pin it there",
		Long: "rollback asks the reporter (POST /v1/rollbacks) to move ENV back, for REPOSITORY, to the digest it held before\n" +
			"its current one, or to --to, a digest it held. The gates still check it: a digest whose signatures or policy no\n" +
			"longer hold is refused, naming why. The history and the promoted event say it is a rollback, with --reason and\n" +
			"your token's name. It pins ENV for REPOSITORY first: every promotion into it but another rollback is refused\n" +
			"until `digestline unpin ENV REPOSITORY`, so that no automation undoes it. Exit status 2 means rejected or failed.\n\n" +
			"With --release, every image of a release goes back, as one release, to the digest ENV held before it, and ENV\n" +
			"is pinned for each.",
		Args: func(cmd *cobra.Command, args []string) error {
			if o.release != "" {
				return cobra.ExactArgs(1)(cmd, args)
			}
			return cobra.ExactArgs(2)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.release != "" {
				return o.runRelease(cmd.Context(), args[0], cmd.OutOrStdout())
			}
			return o.run(cmd.Context(), args[0], args[1], cmd.OutOrStdout())
		},
	}
	fs := cmd.Flags()
	o.api.addFlags(fs)
	fs.StringVar(&o.reason, "reason", "", "why (required): the history and the pin keep it")
	fs.StringVar(&o.to, "to", "", "a digest the environment held (default: the one before its current one)")
	fs.StringVar(&o.release, "release", "", "roll back every image of this release, as one")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up following after this long (the rollback goes on)")
	fs.BoolVar(&o.noWait, "no-wait", false, "return once the request is accepted")
	_ = cmd.MarkFlagRequired("reason")
	return cmd
}

func (o *rollbackOptions) run(ctx context.Context, env, repo string, out io.Writer) error {
	r, err := name.NewRepository(repo)
	if err != nil {
		return fmt.Errorf("repository %q: want registry/path: %w", repo, err)
	}
	c, err := o.api.writer()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	var accepted api.PromoteAccepted
	body := api.RollbackRequest{Environment: env, Repository: r.Name(), To: o.to, Reason: o.reason}
	if _, err := c.do(ctx, http.MethodPost, "/v1/rollbacks", body, &accepted); err != nil {
		return err
	}
	fmt.Fprintf(out, "run %s: rolling %s back for %s (pinned until digestline unpin %s %s)\n  page %s/runs/%s\n",
		accepted.RunID, env, r.Name(), env, r.Name(), c.base, accepted.RunID)
	if o.noWait {
		return nil
	}
	return followRun(ctx, c, accepted.RunID, out)
}

// runRelease rolls the release back as one, and follows the run.
func (o *rollbackOptions) runRelease(ctx context.Context, env string, out io.Writer) error {
	c, err := o.api.writer()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	var accepted api.PromoteAccepted
	body := api.RollbackRequest{Environment: env, Release: o.release, Reason: o.reason}
	if _, err := c.do(ctx, http.MethodPost, "/v1/rollbacks", body, &accepted); err != nil {
		return err
	}
	fmt.Fprintf(out, "run %s: rolling %s back from release %s (each image pinned until digestline unpin)\n  page %s/runs/%s\n",
		accepted.RunID, env, o.release, c.base, accepted.RunID)
	if o.noWait {
		return nil
	}
	return followRun(ctx, c, accepted.RunID, out)
}

func newUnpinCommand() *cobra.Command {
	o := &apiOptions{write: true}
	cmd := &cobra.Command{
		Use:   "unpin ENV REPOSITORY",
		Short: "Lift the pin a rollback put on an environment: promotions into it go through the gates again",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, err := name.NewRepository(args[1])
			if err != nil {
				return fmt.Errorf("repository %q: want registry/path: %w", args[1], err)
			}
			c, err := o.writer()
			if err != nil {
				return err
			}
			var p api.Pin
			if _, err := c.do(cmd.Context(), http.MethodDelete, "/v1/pins/"+url.PathEscape(args[0])+"/"+repo.Name(), nil, &p); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "unpinned %s for %s (pinned at %s by %s on %s: %s)\n",
				p.Environment, p.Repository, runs.ShortDigest(p.Digest), p.By, p.At.Format(time.RFC3339), p.Reason)
			return nil
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}
