package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
)

// dlqOptions are the flags of the dlq commands.
type dlqOptions struct {
	natsURL string
	asJSON  bool // list
	all     bool // replay
}

func newDLQCommand() *cobra.Command {
	o := &dlqOptions{}
	cmd := &cobra.Command{
		Use:   "dlq COMMAND",
		Short: "See and recover events no handler could process (the dead-letter stream)",
	}
	cmd.PersistentFlags().StringVar(&o.natsURL, "nats", "", natsHelp)
	list := &cobra.Command{
		Use:   "list",
		Short: "List dead letters: sequence, time, consumer, event, deliveries and reason",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return o.withBus(cmd.Context(), cmd.OutOrStdout(), o.list) },
	}
	list.Flags().BoolVar(&o.asJSON, "json", false, "print JSON")
	show := &cobra.Command{
		Use:   "show SEQ",
		Short: "Print one dead letter as JSON, its event included",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.withBus(cmd.Context(), cmd.OutOrStdout(), func(ctx context.Context, js jetstream.JetStream, out io.Writer) error {
				return o.show(ctx, js, args[0], out)
			})
		},
	}
	replay := &cobra.Command{
		Use:   "replay SEQ... | --all",
		Short: "Publish dead letters again on their subject, for their consumer to retry, and remove them from the dead-letter stream",
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.withBus(cmd.Context(), cmd.OutOrStdout(), func(ctx context.Context, js jetstream.JetStream, out io.Writer) error {
				return o.replay(ctx, js, args, out)
			})
		},
	}
	replay.Flags().BoolVar(&o.all, "all", false, "replay every dead letter")
	cmd.AddCommand(list, show, replay)
	return cmd
}

// withBus runs fn connected to the bus.
func (o *dlqOptions) withBus(ctx context.Context, out io.Writer, fn func(context.Context, jetstream.JetStream, io.Writer) error) error {
	nc, js, err := connectBus(o.natsURL, "digestline-dlq")
	if err != nil {
		return err
	}
	defer nc.Close()
	return fn(ctx, js, out)
}

// list prints every dead letter, oldest first.
func (o *dlqOptions) list(ctx context.Context, js jetstream.JetStream, out io.Writer) error {
	dls, err := bus.DeadLetters(ctx, js, 0)
	if err != nil {
		return err
	}
	if o.asJSON {
		return json.NewEncoder(out).Encode(dls)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tCONSUMER\tSUBJECT\tRUN\tDELIVERIES\tREASON")
	for _, d := range dls {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\n", d.Sequence, d.Time.UTC().Format(time.RFC3339), d.Consumer, d.Subject, d.RunID, d.Deliveries, d.Reason)
	}
	return tw.Flush()
}

// show prints the dead letter at sequence arg, with its event.
func (o *dlqOptions) show(ctx context.Context, js jetstream.JetStream, arg string, out io.Writer) error {
	seq, err := strconv.ParseUint(arg, 10, 64)
	if err != nil {
		return fmt.Errorf("SEQ is a dead-letter sequence number from dlq list: %w", err)
	}
	dl, err := bus.DeadLetterAt(ctx, js, seq)
	if err != nil {
		return err
	}
	body := dl.Body
	dl.Body = nil
	view := struct {
		bus.DeadLetter
		Event json.RawMessage `json:"event,omitempty"`
		Raw   string          `json:"raw,omitempty"` // a body that is not JSON
	}{DeadLetter: dl}
	if json.Valid(body) {
		view.Event = body
	} else {
		view.Raw = string(body)
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(view)
}

// replay publishes the named dead letters (or, with --all, every one) again.
func (o *dlqOptions) replay(ctx context.Context, js jetstream.JetStream, args []string, out io.Writer) error {
	var seqs []uint64
	if o.all {
		dls, err := bus.DeadLetters(ctx, js, 0)
		if err != nil {
			return err
		}
		for _, d := range dls {
			seqs = append(seqs, d.Sequence)
		}
	}
	for _, a := range args {
		seq, err := strconv.ParseUint(a, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a dead-letter sequence number: %w", a, err)
		}
		seqs = append(seqs, seq)
	}
	if len(seqs) == 0 {
		return fmt.Errorf("name the dead letters to replay (see digestline dlq list), or pass --all")
	}
	for _, seq := range seqs {
		dl, err := bus.Replay(ctx, js, seq)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "replayed #%d on %s for %s\n", seq, dl.Subject, dl.Consumer)
	}
	return nil
}
