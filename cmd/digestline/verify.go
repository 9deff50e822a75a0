package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/digestline/digestline/pkg/sign"
	"github.com/digestline/digestline/pkg/verify"
	"github.com/spf13/cobra"
)

// verifyOptions are verify's flags.
type verifyOptions struct {
	jobs     int
	keyFiles []string
}

func newVerifyCommand() *cobra.Command {
	o := &verifyOptions{}
	cmd := &cobra.Command{
		Use:   "verify REF@sha256:... [--key cosign.pub]...",
		Short: "Pull REF by digest and prove every byte matches its descriptors (and, with --key, that a trusted key signed it)",
		Args:  cobra.ExactArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), args[0], cmd.OutOrStdout()) },
	}
	cmd.Flags().IntVar(&o.jobs, "jobs", 4, "blobs hashed in parallel")
	cmd.Flags().StringSliceVar(&o.keyFiles, "key", strings.Split(os.Getenv("DIGESTLINE_TRUSTED_KEYS"), ","),
		"trusted public key (PEM, e.g. cosign.pub; repeat for several): every cosign signature attached must be one of theirs, and there must be one (default: DIGESTLINE_TRUSTED_KEYS)")
	return cmd
}

// run proves target and prints each check.
func (o *verifyOptions) run(ctx context.Context, target string, w io.Writer) error {
	ref, err := digestRef("verify", target)
	if err != nil {
		return err
	}
	client, err := registryClient()
	if err != nil {
		return err
	}
	keys, err := sign.LoadVerifiers(o.keyFiles)
	if err != nil {
		return err
	}
	rep, err := verify.Image(ctx, client, ref, nil, verify.Options{Jobs: o.jobs, Keys: keys})
	if err != nil {
		return &exitCodeError{code: 2, err: err}
	}
	for _, c := range rep.Checks {
		fmt.Fprintln(w, c)
	}
	return nil
}
