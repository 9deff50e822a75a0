package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/digestline/digestline/cmd/digestline/internal/dev"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/pkg/telemetry"
	"github.com/google/go-containerregistry/pkg/name"
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
	cmd.AddCommand(newProbeCommand())
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:5000", "listen address")
	cmd.Flags().StringVar(&data, "data", service.Env("DATA", ".digestline/registry"), "storage directory (DIGESTLINE_DATA)")
	cmd.Flags().StringVar(&logLevel, "log-level", service.Env("LOG_LEVEL", "info"), "debug, info, warn or error")
	return cmd
}

func newProbeCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "probe REGISTRY[/REPOSITORY]",
		Short: "Find what a registry supports (auth, referrers API, chunked uploads, mount, digest header, blob delete, tag pagination), leaving nothing behind",
		Long: "probe asks the registry what it does, without pushing or deleting anything that exists: upload sessions it opens\n" +
			"are cancelled. Without a repository it probes REGISTRY/digestline-probe (some answers need one that exists:\n" +
			"the digest header and tag pagination are read from its tags).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			target := args[0]
			if !strings.Contains(target, "/") {
				target += "/digestline-probe"
			}
			repo, err := name.NewRepository(target)
			if err != nil {
				return fmt.Errorf("probe takes REGISTRY or REGISTRY/REPOSITORY: %w", err)
			}
			client, err := registryClient()
			if err != nil {
				return err
			}
			caps, err := client.Probe(cmd.Context(), repo)
			if err != nil {
				return &exitCodeError{code: 2, err: err}
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(caps)
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), caps)
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the capabilities as JSON")
	return cmd
}
