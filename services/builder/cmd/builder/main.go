// Command builder runs the digestline builder service.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"

	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/digestline/digestline/services/builder"
)

func main() {
	webhookAddr := flag.String("webhook-addr", service.Env("WEBHOOK_ADDR", ""), "serve /webhooks/{github,gitlab,cloudevents} here (DIGESTLINE_WEBHOOK_ADDR; off when empty)")
	webhookConfig := flag.String("webhook-config", service.Env("WEBHOOK_CONFIG", ""), "YAML mapping repositories to images (DIGESTLINE_WEBHOOK_CONFIG)")
	service.Main("builder", "127.0.0.1:8081", func(ctx context.Context, d service.Deps) error {
		created, err := oci.SourceDateEpoch()
		if err != nil {
			return err
		}
		signer, err := sign.SignerFromEnv()
		if err != nil {
			return err
		}
		cfg := builder.Config{Deps: d, Created: created, WorkDir: service.Env("WORK_DIR", ""), Signer: signer}
		// The config's watches run without a listener; its webhooks need one.
		if cfg.Webhook, err = builder.LoadWebhookConfig(*webhookConfig); err != nil {
			return err
		}
		if *webhookAddr != "" {
			if cfg.WebhookListener, err = net.Listen("tcp", *webhookAddr); err != nil {
				return fmt.Errorf("webhooks (set --webhook-addr): %w", err)
			}
		}
		return builder.Run(ctx, cfg)
	})
}
