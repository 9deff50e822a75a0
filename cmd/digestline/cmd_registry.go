package main

import (
	"fmt"
	"net"
	"os"

	"github.com/digestline/digestline/cmd/digestline/internal/dev"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/pkg/telemetry"
	"github.com/spf13/cobra"
)

func newRegistryCommand() *cobra.Command {
	var addr, data, logLevel string
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Serve the OCI registry of digestline dev on its own (olareg, with the referrers API), e.g. in docker-compose",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tel, err := telemetry.Setup(cmd.Context(), "digestline-registry", os.Stderr, logLevel)
			if err != nil {
				return err
			}
			srv, err := dev.Registry(data, tel.Logger, nil)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("registry (pass --addr): %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "registry on http://%s, data in %s\n", ln.Addr(), data)
			return service.Serve(cmd.Context(), srv, ln, "registry")
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:5000", "listen address")
	cmd.Flags().StringVar(&data, "data", service.Env("DATA", ".digestline/registry"), "storage directory (DIGESTLINE_DATA)")
	cmd.Flags().StringVar(&logLevel, "log-level", service.Env("LOG_LEVEL", "info"), "debug, info, warn or error")
	return cmd
}
