package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/digestline/digestline/cmd/digestline/internal/dev"
	"github.com/digestline/digestline/cmd/digestline/internal/stack"
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
	fs.StringVar(&cfg.DataDir, "data", devDataDir(), "directory for NATS and registry state (kept across restarts)")
	fs.IntVar(&cfg.NATSPort, "nats-port", 4222, "NATS client port (-1 picks a free one)")
	fs.StringVar(&cfg.RegistryAddr, "registry-addr", "127.0.0.1:5000", "embedded registry listen address")
	fs.StringVar(&cfg.APIAddr, "api-addr", "127.0.0.1:8080", "reporter API listen address")
	fs.StringVar(&s.Environments, "environments", service.Env("ENVIRONMENTS", dev.DefaultEnvironments()), "promotion chain, first to last (DIGESTLINE_ENVIRONMENTS)")
	fs.StringVar(&cfg.Reporter.TagFormat, "tag-format", service.Env("TAG_FORMAT", "{env}"), "the tag a promotion moves; {env} is the environment (DIGESTLINE_TAG_FORMAT)")
	fs.StringVar(&s.RequiredReferrers, "required-referrers", service.Env("REQUIRED_REFERRERS", ""),
		"artifact types an environment requires, e.g. prod=application/spdx+json (DIGESTLINE_REQUIRED_REFERRERS)")
	fs.StringVar(&s.Places, "places", service.Env("PLACES", ""),
		"where environments live when not in the repository builds go to, e.g. prod=registry-b.example/prod/{path}:{env} (DIGESTLINE_PLACES; docs/promotion.md)")
	fs.StringVar(&s.TraceURL, "trace-url", service.Env("TRACE_URL", ""), "a trace's page, with {traceId}: run pages link their trace there, e.g. http://127.0.0.1:16686/trace/{traceId} (DIGESTLINE_TRACE_URL)")
	fs.StringVar(&s.GCFile, "gc", service.Env("GC", ""), "garbage collection schedule: which repositories, how often, dry run or not (DIGESTLINE_GC; docs/day-two.md)")
	fs.StringVar(&s.PolicyFile, "policy", service.Env("POLICY", ""), "policy file: each environment's keys and rules in CEL (DIGESTLINE_POLICY; docs/policy.md)")
	fs.StringVar(&cfg.WebhookAddr, "webhook-addr", service.Env("WEBHOOK_ADDR", ""), "serve the builder's webhooks here (DIGESTLINE_WEBHOOK_ADDR; off when empty)")
	fs.StringVar(&s.WebhookConfig, "webhook-config", service.Env("WEBHOOK_CONFIG", ""), "YAML mapping repositories to images (DIGESTLINE_WEBHOOK_CONFIG)")
	fs.StringVar(&s.Notifications, "notifications", service.Env("NOTIFICATIONS", ""), "run the notifier with this file's webhooks (DIGESTLINE_NOTIFICATIONS; docs/day-two.md)")
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
	ctxFile, err := stack.Save(stack.Context{NATSURL: env.NATSURL, APIURL: env.APIURL, TokenFile: absPath(env.TokenFile),
		Registry: env.RegistryAddr, WebhookURL: env.WebhookURL, DataDir: absPath(cfg.DataDir)})
	if err != nil {
		return err
	}
	o.banner(out, env, cfg, ctxFile)
	return env.Wait()
}

// banner says where each part listens, where the context is, and how to
// reach the stack from another shell or machine.
func (o *devOptions) banner(out io.Writer, env *dev.Env, cfg dev.Config, ctxFile string) {
	fmt.Fprintf(out, "digestline dev is running (data in %s)\n", cfg.DataDir)
	fmt.Fprintf(out, "  NATS      %s\n", env.NATSURL)
	fmt.Fprintf(out, "  registry  http://%s\n", env.RegistryAddr)
	fmt.Fprintf(out, "  page      %s/\n", env.APIURL)
	fmt.Fprintf(out, "  API       %s/v1/promotions\n", env.APIURL)
	if env.WebhookURL != "" {
		fmt.Fprintf(out, "  webhooks  %s/webhooks/{github,gitlab,bitbucket,bitbucket-server,azure-devops,cloudevents} (Gitea and Forgejo: github)\n", env.WebhookURL)
		if cfg.Webhook.Secret == "" && cfg.Webhook.GitLabToken == "" {
			fmt.Fprintln(out, "  webhooks have no secret: every request is refused until one is set (DIGESTLINE_WEBHOOK_SECRET; docs/webhooks.md)")
		}
	}
	if env.TokenFile != "" {
		fmt.Fprintf(out, "  API token in %s\n", env.TokenFile)
	}
	fmt.Fprintf(out, "The commands read this stack from %s: no flags needed.\n", ctxFile)
	fmt.Fprintf(out, "  digestline ship DIR %s/demo:latest\n", env.RegistryAddr)
	fmt.Fprintln(out, "  digestline records")
	fmt.Fprintln(out, "From another machine or user, export:")
	fmt.Fprintf(out, "  export DIGESTLINE_NATS_URL=%s DIGESTLINE_API_URL=%s", env.NATSURL, env.APIURL)
	if env.TokenFile != "" {
		fmt.Fprintf(out, " DIGESTLINE_API_TOKEN_FILE=%s", absPath(env.TokenFile))
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "Ctrl-C stops.")
}

// absPath is p made absolute, so the context works from any directory.
func absPath(p string) string {
	if p == "" {
		return ""
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}
