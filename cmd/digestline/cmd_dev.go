package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/dev"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/digestline/digestline/pkg/telemetry"
	"github.com/digestline/digestline/services/builder"
	"github.com/digestline/digestline/services/reporter"
	"github.com/spf13/cobra"
)

func newDevCommand() *cobra.Command {
	var (
		cfg                                                         dev.Config
		logLevel, envs, required, webhookConfig, policyFile, places string
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole pipeline in one process: embedded NATS, embedded registry, all four services and the API",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			tel, err := telemetry.Setup(ctx, "digestline-dev", os.Stderr, logLevel)
			if err != nil {
				return err
			}
			defer func() {
				// ctx is cancelled by now (Ctrl-C): the last spans and
				// metrics get a context of their own to be exported.
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = tel.Shutdown(sctx)
			}()
			if cfg.Created, err = oci.SourceDateEpoch(); err != nil {
				return err
			}
			cfg.Logger, cfg.TracerProvider, cfg.MeterProvider, cfg.Metrics = tel.Logger, tel.TracerProvider, tel.MeterProvider, tel.Metrics
			if cfg.Reporter.Tokens, err = reporter.TokensFromEnv(); err != nil {
				return err
			}
			if cfg.Reporter.RequiredReferrers, err = reporter.ParseRequiredReferrers(required); err != nil {
				return err
			}
			cfg.Reporter.Environments = strings.Split(envs, ",")
			if cfg.Reporter.Places, err = reporter.ParsePlaces(places); err != nil {
				return err
			}
			if cfg.Signer, err = sign.SignerFromEnv(); err != nil {
				return err
			}
			if cfg.TrustedKeys, err = sign.VerifiersFromEnv(); err != nil {
				return err
			}
			if cfg.Signer != nil { // what the builder signs, the verifier proves
				own, err := sign.NewVerifier(cfg.Signer.Public())
				if err != nil {
					return err
				}
				cfg.TrustedKeys = append(cfg.TrustedKeys, own)
			}
			cfg.Reporter.Keys, cfg.Reporter.Signer = cfg.TrustedKeys, cfg.Signer
			if policyFile != "" {
				if cfg.Reporter.Policy, err = reporter.LoadPolicy(policyFile, cfg.Reporter.Environments); err != nil {
					return err
				}
			}
			if cfg.WebhookAddr != "" {
				if cfg.Webhook, err = builder.LoadWebhookConfig(webhookConfig); err != nil {
					return err
				}
			}
			env, err := dev.Start(ctx, cfg)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
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
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.DataDir, "data", service.Env("DATA", filepath.Join(".digestline", "dev")), "directory for NATS and registry state (kept across restarts)")
	fs.IntVar(&cfg.NATSPort, "nats-port", 4222, "NATS client port (-1 picks a free one)")
	fs.StringVar(&cfg.RegistryAddr, "registry-addr", "127.0.0.1:5000", "embedded registry listen address")
	fs.StringVar(&cfg.APIAddr, "api-addr", "127.0.0.1:8080", "reporter API listen address")
	fs.StringVar(&envs, "environments", service.Env("ENVIRONMENTS", strings.Join(reporter.DefaultEnvironments, ",")), "promotion chain, first to last (DIGESTLINE_ENVIRONMENTS)")
	fs.StringVar(&cfg.Reporter.TagFormat, "tag-format", service.Env("TAG_FORMAT", "{env}"), "the tag a promotion moves; {env} is the environment (DIGESTLINE_TAG_FORMAT)")
	fs.StringVar(&required, "required-referrers", service.Env("REQUIRED_REFERRERS", ""),
		"artifact types an environment requires, e.g. prod=application/spdx+json (DIGESTLINE_REQUIRED_REFERRERS)")
	fs.StringVar(&places, "places", service.Env("PLACES", ""),
		"where environments live when not in the repository builds go to, e.g. prod=registry-b.example/prod/{path}:{env} (DIGESTLINE_PLACES; docs/promotion.md)")
	fs.StringVar(&policyFile, "policy", service.Env("POLICY", ""), "policy file: each environment's keys and rules in CEL (DIGESTLINE_POLICY; docs/policy.md)")
	fs.StringVar(&cfg.WebhookAddr, "webhook-addr", service.Env("WEBHOOK_ADDR", ""), "serve the builder's webhooks here (DIGESTLINE_WEBHOOK_ADDR; off when empty)")
	fs.StringVar(&webhookConfig, "webhook-config", service.Env("WEBHOOK_CONFIG", ""), "YAML mapping repositories to images (DIGESTLINE_WEBHOOK_CONFIG)")
	fs.StringVar(&logLevel, "log-level", service.Env("LOG_LEVEL", "info"), "debug, info, warn or error")
	return cmd
}
