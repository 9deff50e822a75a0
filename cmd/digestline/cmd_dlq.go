package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/digestline/digestline/pkg/bus"

	"github.com/digestline/digestline/pkg/service"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
)

func newDLQCommand() *cobra.Command {
	var natsURL string
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "See and recover events no handler could process (the dead-letter stream)",
	}
	cmd.PersistentFlags().StringVar(&natsURL, "nats", service.Env("NATS_URL", service.DefaultNATSURL), "NATS server URL (DIGESTLINE_NATS_URL)")
	connect := func() (*nats.Conn, jetstream.JetStream, error) {
		return service.ConnectFromEnv(natsURL, "digestline-dlq")
	}

	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List dead letters: sequence, time, consumer, event, deliveries and reason",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nc, js, err := connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			dls, err := bus.DeadLetters(cmd.Context(), js, 0)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(dls)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tTIME\tCONSUMER\tSUBJECT\tRUN\tDELIVERIES\tREASON")
			for _, d := range dls {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\n", d.Sequence, d.Time.UTC().Format(time.RFC3339), d.Consumer, d.Subject, d.RunID, d.Deliveries, d.Reason)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	show := &cobra.Command{
		Use:   "show SEQ",
		Short: "Print one dead letter as JSON, its event included",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			seq, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil {
				return fmt.Errorf("SEQ is a dead-letter sequence number from dlq list: %w", err)
			}
			nc, js, err := connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			dl, err := bus.DeadLetterAt(cmd.Context(), js, seq)
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
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(view)
		},
	}

	var all bool
	replay := &cobra.Command{
		Use:   "replay SEQ... | --all",
		Short: "Publish dead letters again on their subject, for their consumer to retry, and remove them from the dead-letter stream",
		RunE: func(cmd *cobra.Command, args []string) error {
			nc, js, err := connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx := cmd.Context()
			var seqs []uint64
			if all {
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
				fmt.Fprintf(cmd.OutOrStdout(), "replayed #%d on %s for %s\n", seq, dl.Subject, dl.Consumer)
			}
			return nil
		},
	}
	replay.Flags().BoolVar(&all, "all", false, "replay every dead letter")
	cmd.AddCommand(list, show, replay)
	return cmd
}
