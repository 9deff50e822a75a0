package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/digestline/digestline/cmd/digestline/internal/dev"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/pkg/telemetry"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"
)

// registryOptions are the flags of registry (serving one).
type registryOptions struct {
	addr, data, logLevel string
}

func newRegistryCommand() *cobra.Command {
	o := &registryOptions{}
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Serve the OCI registry of digestline dev on its own (olareg, with the referrers API), e.g. in docker-compose",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), cmd.OutOrStdout()) },
	}
	cmd.AddCommand(newProbeCommand())
	cmd.Flags().StringVar(&o.addr, "addr", "127.0.0.1:5000", "listen address")
	cmd.Flags().StringVar(&o.data, "data", service.Env("DATA", ".digestline/registry"), "storage directory (DIGESTLINE_DATA)")
	cmd.Flags().StringVar(&o.logLevel, "log-level", service.Env("LOG_LEVEL", "info"), "debug, info, warn or error")
	return cmd
}

// run serves the registry until ctx ends.
func (o *registryOptions) run(ctx context.Context, w io.Writer) error {
	tel, err := telemetry.Setup(ctx, "digestline-registry", os.Stderr, o.logLevel)
	if err != nil {
		return err
	}
	srv, err := dev.Registry(o.data, tel.Logger, nil)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("registry (pass --addr): %w", err)
	}
	fmt.Fprintf(w, "registry on http://%s, data in %s\n", ln.Addr(), o.data)
	return service.Serve(ctx, srv, ln, "registry")
}

// probeOptions are registry probe's flags.
type probeOptions struct{ asJSON bool }

func newProbeCommand() *cobra.Command {
	o := &probeOptions{}
	cmd := &cobra.Command{
		Use:   "probe REGISTRY[/REPOSITORY]",
		Short: "Find what a registry supports (auth, referrers API, chunked uploads, mount, digest header, blob delete, tag pagination), leaving nothing behind",
		Long: "probe asks the registry what it does, without pushing or deleting anything that exists: upload sessions it opens\n" +
			"are cancelled. Without a repository it probes REGISTRY/digestline-probe (some answers need one that exists:\n" +
			"the digest header and tag pagination are read from its tags).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), args[0], cmd.OutOrStdout()) },
	}
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print the capabilities as JSON")
	return cmd
}

// run probes target and prints what it found.
func (o *probeOptions) run(ctx context.Context, target string, w io.Writer) error {
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
	caps, err := client.Probe(ctx, repo)
	if err != nil {
		return &exitCodeError{code: 2, err: err}
	}
	if o.asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(caps)
	}
	_, err = fmt.Fprint(w, caps)
	return err
}
