package main

import (
	"context"
	"errors"
	"time"

	"github.com/digestline/digestline/pkg/runs"

	"github.com/digestline/digestline/cmd/digestline/internal/ship"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/pkg/telemetry"
	"github.com/spf13/cobra"
)

func newShipCommand() *cobra.Command {
	var (
		natsURL, envName string
		timeout          time.Duration
		asJSON           bool
	)
	cmd := &cobra.Command{
		Use:   "ship DIR REF",
		Short: "Build DIR, push it to REF, verify it and promote it, following the run live",
		Long: "ship uploads DIR as a tarball to the bus's blob store, publishes build.requested and prints the run's\n" +
			"[STAGE] and [VERIFY] lines as the services work. It exits 0 once the digest is promoted, and non-zero\n" +
			"with the failure's class and hint otherwise.",
		Args: cobra.ExactArgs(2),
	}
	spec := specFlags(cmd.Flags())
	guard := tagGuardFlags(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		s, err := spec()
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
		defer cancel()
		tel, err := telemetry.Setup(ctx, "digestline-cli", cmd.ErrOrStderr(), "warn")
		if err != nil {
			return err
		}
		defer func() { _ = tel.Shutdown(context.WithoutCancel(ctx)) }()
		nc, js, err := service.ConnectFromEnv(natsURL, "digestline-ship")
		if err != nil {
			return err
		}
		defer nc.Close()
		b := bus.NewBus(js, "/digestline/cli/ship", bus.WithTracerProvider(tel.TracerProvider), bus.WithLogger(tel.Logger))
		shipFn := ship.Ship
		if asJSON {
			shipFn = ship.ShipJSON
		}
		_, err = shipFn(ctx, b, ship.Request{Dir: args[0], Target: args[1], Env: envName, Spec: s, Tag: *guard}, cmd.OutOrStdout())
		var runErr *runs.Error
		if errors.As(err, &runErr) {
			return &exitCodeError{code: 2, err: err}
		}
		return err
	}
	fs := cmd.Flags()
	fs.StringVar(&natsURL, "nats", service.Env("NATS_URL", service.DefaultNATSURL), "NATS server URL (DIGESTLINE_NATS_URL)")
	fs.StringVar(&envName, "env", "", "environment to promote to (default: the first of the chain)")
	fs.DurationVar(&timeout, "timeout", 10*time.Minute, "give up following the run after this long")
	fs.BoolVar(&asJSON, "json", false, "print each of the run's events as a JSON line (structured CloudEvents) instead of [STAGE] lines")
	return cmd
}
