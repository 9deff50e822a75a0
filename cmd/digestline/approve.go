package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/digestline/digestline/pkg/api"
	"github.com/spf13/cobra"
)

// approveOptions are approve's flags.
type approveOptions struct {
	api apiOptions
	to  string
}

func newApproveCommand() *cobra.Command {
	o := &approveOptions{api: apiOptions{write: true}}
	cmd := &cobra.Command{
		Use:   "approve REPOSITORY@sha256:... --to ENV",
		Short: "Record your approval (as the API token's name) of a digest for an environment, which policies can require",
		Args:  cobra.ExactArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), args[0], cmd.OutOrStdout()) },
	}
	o.api.addFlags(cmd.Flags())
	cmd.Flags().StringVar(&o.to, "to", "", "environment the approval is for (required)")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

// run records the approval of target for o.to.
func (o *approveOptions) run(ctx context.Context, target string, out io.Writer) error {
	ref, err := digestRef("approve", target)
	if err != nil {
		return err
	}
	c, err := o.api.writer()
	if err != nil {
		return err
	}
	var rec api.ApprovalRecord
	if _, err := c.do(ctx, http.MethodPost, "/v1/approvals", api.ApproveRequest{Ref: ref.String(), To: o.to}, &rec); err != nil {
		return err
	}
	fmt.Fprintf(out, "approved %s for %s by %s at %s\n", ref, rec.Environment, rec.By, rec.At.Format(time.RFC3339))
	return nil
}
