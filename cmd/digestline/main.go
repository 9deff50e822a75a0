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
	"strings"
	"syscall"

	"github.com/digestline/digestline/pkg/failure"
	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "digestline:", describe(err))
		var ce *exitCodeError
		if errors.As(err, &ce) {
			os.Exit(ce.code)
		}
		os.Exit(1)
	}
}

// describe is an error as the CLI prints it: the message, and the hint of
// its failure on a line of its own when the message does not carry it.
func describe(err error) string {
	var f *failure.Error
	if errors.As(err, &f) && f.Hint != "" && !strings.Contains(err.Error(), f.Hint) {
		return err.Error() + "\nhint: " + f.Hint
	}
	return err.Error()
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
		newInspectCommand(), newDiscoverCommand(), newTagsCommand(), newPullCommand(), newPromoteCommand(), newAdmitCommand(), newRollbackCommand(), newUnpinCommand(), newFreezeCommand(), newUnfreezeCommand(), newApproveCommand(), newGCCommand(), newKeygenCommand(), newCopyCommand(), newRecordsCommand(), newRunCommand(), newDLQCommand(), newRegistryCommand())
	return root
}
