// Command digestline is the CLI of the digest-first release pipeline: `dev`
// runs everything in one process, `ship` sends a directory through the
// pipeline on the bus, and `build`, `push` and `verify` do each step
// standalone against an OCI layout and any registry.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/digestline/digestline/pkg/failure"
	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, newRootCommand(), os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line args under root and returns its exit
// status. An error is printed with its hint; one in the arguments or flags
// (the command never ran) also with the command's usage, as cobra's own
// messages ("accepts 2 arg(s), received 1") do not say which it wants.
func run(ctx context.Context, root *cobra.Command, args []string, stderr io.Writer) int {
	accepted := false
	onRun(root, func() { accepted = true })
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "digestline:", describe(err))
	if !accepted && cmd != nil {
		fmt.Fprintf(stderr, "usage: %s\n'%s --help' says more.\n", cmd.UseLine(), cmd.CommandPath())
	}
	var ce *exitCodeError
	if errors.As(err, &ce) {
		return ce.code
	}
	return 1
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
		Use:           "digestline COMMAND",
		Short:         "A digest-first release pipeline for OCI images and artifacts",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newDevCommand(), newShipCommand(), newBuildCommand(), newPushCommand(), newVerifyCommand(), newAttachCommand(),
		newInspectCommand(), newDiscoverCommand(), newTagsCommand(), newPullCommand(), newPromoteCommand(), newAdmitCommand(), newRollbackCommand(), newUnpinCommand(), newFreezeCommand(), newUnfreezeCommand(), newApproveCommand(), newGCCommand(), newKeygenCommand(), newCopyCommand(), newRecordsCommand(), newRunCommand(), newDLQCommand(), newRegistryCommand())
	groups(root)
	return root
}

// onRun has every command call mark as it starts to run, once cobra has
// accepted its arguments and flags (required ones included).
func onRun(cmd *cobra.Command, mark func()) {
	if runE := cmd.RunE; runE != nil {
		cmd.RunE = func(c *cobra.Command, args []string) error {
			mark()
			return runE(c, args)
		}
	}
	for _, sub := range cmd.Commands() {
		onRun(sub, mark)
	}
}

// groups makes each command that only groups others (dlq, run) refuse an
// unknown subcommand, as the root does, instead of printing its help and
// exiting 0 on a typo.
func groups(cmd *cobra.Command) {
	for _, sub := range cmd.Commands() {
		groups(sub)
	}
	if cmd.HasParent() && !cmd.Runnable() && cmd.HasSubCommands() {
		cmd.Args = cobra.NoArgs
		cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	}
}
