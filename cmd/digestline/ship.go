package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/ship"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/digestline/digestline/pkg/telemetry"
	"github.com/spf13/cobra"
)

// shipOptions are ship's flags.
type shipOptions struct {
	spec             func() (events.BuildSpec, error)
	guard            *events.TagGuard
	natsURL, envName string
	api              string
	timeout          time.Duration
	asJSON           bool
}

func newShipCommand() *cobra.Command {
	o := &shipOptions{}
	cmd := &cobra.Command{
		Use:   "ship DIR REF",
		Short: "Build DIR, push it to REF, verify it and promote it, following the run live",
		Long: "ship uploads DIR as a tarball to the bus's blob store, publishes build.requested and prints the run's\n" +
			"[STAGE] and [VERIFY] lines as the services work. It exits 0 once the digest is promoted, or when a newer\n" +
			"request for the same tag supersedes the run (docs/promotion.md), and non-zero with the failure's class and\n" +
			"hint otherwise.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), args[0], args[1], cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	o.spec = specFlags(fs)
	o.guard = tagGuardFlags(fs)
	fs.StringVar(&o.natsURL, "nats", "", natsHelp)
	fs.StringVar(&o.api, "api", "", apiHelp+"; ship prints the run's page there")
	fs.StringVar(&o.envName, "env", "", "environment to promote to (default: the first of the chain)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up following the run after this long")
	fs.BoolVar(&o.asJSON, "json", false, "print each of the run's events as a JSON line (structured CloudEvents) instead of [STAGE] lines")
	return cmd
}

// run ships dir to target through the bus and follows the run; a run that
// ends without promotion exits 2.
func (o *shipOptions) run(ctx context.Context, dir, target string, out, errOut io.Writer) error {
	s, err := o.spec()
	if err != nil {
		return err
	}
	req := ship.Request{Dir: dir, Target: target, Env: o.envName, Spec: s, Tag: *o.guard}
	if err := req.Check(); err != nil { // before reaching for the bus
		return err
	}
	if base, known, err := apiURL(o.api); err != nil {
		return fmt.Errorf("--api: %w", err)
	} else if known {
		req.PageURL = base
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	tel, err := telemetry.Setup(ctx, "digestline-cli", errOut, "warn")
	if err != nil {
		return err
	}
	defer func() { _ = tel.Shutdown(context.WithoutCancel(ctx)) }()
	nc, js, err := connectBus(o.natsURL, "digestline-ship")
	if err != nil {
		return err
	}
	defer nc.Close()
	b := bus.NewBus(js, "/digestline/cli/ship", bus.WithTracerProvider(tel.TracerProvider), bus.WithLogger(tel.Logger))
	shipFn := ship.Ship
	if o.asJSON {
		shipFn, req.Notes = ship.ShipJSON, errOut // its standard output is events, one per line
	}
	_, err = shipFn(ctx, b, req, out)
	var runErr *runs.Error
	if errors.As(err, &runErr) {
		return &exitCodeError{code: 2, err: err}
	}
	return err
}
