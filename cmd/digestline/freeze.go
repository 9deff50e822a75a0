package main

import (
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/digestline/digestline/pkg/api"
	"github.com/spf13/cobra"
)

func newFreezeCommand() *cobra.Command {
	o := &apiOptions{write: true}
	var until, reason string
	cmd := &cobra.Command{
		Use:   "freeze ENV --until TIME --reason TEXT",
		Short: "Refuse every promotion into an environment until TIME (an emergency approver's approval lets one through)",
		Long: "freeze asks the reporter (POST /v1/freezes) to refuse every promotion into ENV until TIME — an RFC 3339 time\n" +
			"(2026-12-28T09:00:00+01:00) or a duration from now (36h) — naming the freeze, REASON and when it ends. The\n" +
			"policy file can freeze an environment on a schedule too (docs/day-two.md). `digestline unfreeze ENV` lifts it.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := flagTime("--until", until, time.Now().Add)
			if err != nil {
				return err
			}
			c, err := o.writer()
			if err != nil {
				return err
			}
			var f api.Freeze
			if _, err := c.do(cmd.Context(), http.MethodPost, "/v1/freezes", api.FreezeRequest{Environment: args[0], Until: t, Reason: reason}, &f); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "frozen %s until %s by %s: %s\n", f.Environment, f.Until.Local().Format(time.RFC3339), f.By, f.Reason)
			return nil
		},
	}
	o.addFlags(cmd.Flags())
	cmd.Flags().StringVar(&until, "until", "", "when the freeze ends: an RFC 3339 time, or a duration from now such as 36h (required)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (required): a refused promotion says it")
	_ = cmd.MarkFlagRequired("until")
	_ = cmd.MarkFlagRequired("reason")
	return cmd
}

func newUnfreezeCommand() *cobra.Command {
	o := &apiOptions{write: true}
	cmd := &cobra.Command{
		Use:   "unfreeze ENV",
		Short: "Lift the freeze someone set on an environment (a policy's freeze window is lifted in the policy file)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.writer()
			if err != nil {
				return err
			}
			var f api.Freeze
			if _, err := c.do(cmd.Context(), http.MethodDelete, "/v1/freezes/"+url.PathEscape(args[0]), nil, &f); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "unfrozen %s (frozen until %s by %s: %s)\n", f.Environment, f.Until.Local().Format(time.RFC3339), f.By, f.Reason)
			return nil
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}
