package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/digestline/digestline/cmd/digestline/internal/dev"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/pkg/telemetry"
	"github.com/spf13/cobra"
)

// devOptions are dev's flags.
type devOptions struct {
	cfg      dev.Config
	settings dev.Settings
	logLevel string
}

func newDevCommand() *cobra.Command {
	o := &devOptions{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole pipeline in one process: embedded NATS, embedded registry, all four services and the API",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), cmd.OutOrStdout()) },
	}
	fs, cfg, s := cmd.Flags(), &o.cfg, &o.settings
	fs.StringVar(&cfg.DataDir, "data", service.Env("DATA", filepath.Join(".digestline", "dev")), "directory for NATS and registry state (kept across restarts)")
	fs.IntVar(&cfg.NATSPort, "nats-port", 4222, "NATS client port (-1 picks a free one)")
	fs.StringVar(&cfg.RegistryAddr, "registry-addr", "127.0.0.1:5000", "embedded registry listen address")
	fs.StringVar(&cfg.APIAddr, "api-addr", "127.0.0.1:8080", "reporter API listen address")
	fs.StringVar(&s.Environments, "environments", service.Env("ENVIRONMENTS", dev.DefaultEnvironments()), "promotion chain, first to last (DIGESTLINE_ENVIRONMENTS)")
	fs.StringVar(&cfg.Reporter.TagFormat, "tag-format", service.Env("TAG_FORMAT", "{env}"), "the tag a promotion moves; {env} is the environment (DIGESTLINE_TAG_FORMAT)")
	fs.StringVar(&s.RequiredReferrers, "required-referrers", service.Env("REQUIRED_REFERRERS", ""),
		"artifact types an environment requires, e.g. prod=application/spdx+json (DIGESTLINE_REQUIRED_REFERRERS)")
	fs.StringVar(&s.Places, "places", service.Env("PLACES", ""),
		"where environments live when not in the repository builds go to, e.g. prod=registry-b.example/prod/{path}:{env} (DIGESTLINE_PLACES; docs/promotion.md)")
	fs.StringVar(&s.PolicyFile, "policy", service.Env("POLICY", ""), "policy file: each environment's keys and rules in CEL (DIGESTLINE_POLICY; docs/policy.md)")
	fs.StringVar(&cfg.WebhookAddr, "webhook-addr", service.Env("WEBHOOK_ADDR", ""), "serve the builder's webhooks here (DIGESTLINE_WEBHOOK_ADDR; off when empty)")
	fs.StringVar(&s.WebhookConfig, "webhook-config", service.Env("WEBHOOK_CONFIG", ""), "YAML mapping repositories to images (DIGESTLINE_WEBHOOK_CONFIG)")
	fs.StringVar(&o.logLevel, "log-level", service.Env("LOG_LEVEL", "info"), "debug, info, warn or error")
	return cmd
}

// run starts the stack, says where each part listens, and runs until ctx
// ends (Ctrl-C).
func (o *devOptions) run(ctx context.Context, out io.Writer) error {
	tel, err := telemetry.Setup(ctx, "digestline-dev", os.Stderr, o.logLevel)
	if err != nil {
		return err
	}
	defer tel.Close()
	cfg := o.cfg
	if cfg.Created, err = oci.SourceDateEpoch(); err != nil {
		return err
	}
	cfg.Logger, cfg.TracerProvider, cfg.MeterProvider, cfg.Metrics = tel.Logger, tel.TracerProvider, tel.MeterProvider, tel.Metrics
	if err := o.settings.Configure(&cfg); err != nil {
		return err
	}
	env, err := dev.Start(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "digestline dev is running (data in %s)\n", cfg.DataDir)
	fmt.Fprintf(out, "  NATS      %s\n", env.NATSURL)
	fmt.Fprintf(out, "  registry  http://%s\n", env.RegistryAddr)
	fmt.Fprintf(out, "  API       %s/v1/promotions\n", env.APIURL)
	if env.WebhookURL != "" {
		fmt.Fprintf(out, "  webhooks  %s/webhooks/{github,gitlab,cloudevents}\n", env.WebhookURL)
	}
	if env.TokenFile != "" {
		fmt.Fprintf(out, "  API token in %s (digestline promote reads it; or set DIGESTLINE_API_TOKEN)\n", env.TokenFile)
	}
	fmt.Fprintf(out, "ship with:  digestline ship DIR %s/demo:latest --nats %s\n", env.RegistryAddr, env.NATSURL)
	fmt.Fprintln(out, "Ctrl-C stops.")
	return env.Wait()
}
