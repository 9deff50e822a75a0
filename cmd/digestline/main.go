// Command digestline is the CLI of the digest-first release pipeline: `dev`
// runs everything in one process, `ship` sends a directory through the
// pipeline on the bus, and `build`, `push` and `verify` do each step
// standalone against an OCI layout and any registry.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "digestline:", err)
		var ce *exitCodeError
		if errors.As(err, &ce) {
			os.Exit(ce.code)
		}
		os.Exit(1)
	}
}

// exitCodeError carries a specific exit status.
type exitCodeError struct {
	code int
	err  error
}

func (e *exitCodeError) Error() string { return e.err.Error() }
func (e *exitCodeError) Unwrap() error { return e.err }

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "digestline",
		Short:         "A digest-first release pipeline for OCI images and artifacts",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newDevCommand(), newShipCommand(), newBuildCommand(), newPushCommand(), newVerifyCommand(), newAttachCommand(),
		newInspectCommand(), newDiscoverCommand(), newTagsCommand(), newPullCommand(), newPromoteCommand(), newRecordsCommand(), newDLQCommand(), newRegistryCommand())
	return root
}
