package dev

import (
	"github.com/digestline/digestline/pkg/bus"
	"strings"

	"github.com/digestline/digestline/pkg/sign"
	"github.com/digestline/digestline/services/builder"
	"github.com/digestline/digestline/services/notifier"
	"github.com/digestline/digestline/services/reporter"
)

// Settings are what `digestline dev` is given as text (flags or DIGESTLINE_
// variables) and Configure reads into a Config: the reporter's settings
// (the promotion chain, the required referrers, the places, the policy
// file) and the webhook rules.
type Settings struct {
	reporter.Settings
	WebhookConfig string
	// Notifications is the notifier's file (off when empty).
	Notifications string
}

// DefaultEnvironments is the promotion chain when none is named.
func DefaultEnvironments() string { return strings.Join(reporter.DefaultEnvironments, ",") }

// Configure reads s, the API tokens, the signing and trusted keys
// (DIGESTLINE_API_TOKEN, DIGESTLINE_SIGNING_KEY, DIGESTLINE_TRUSTED_KEYS) and
// the retention (bus.RetentionFromEnv) of the environment into cfg. What
// the builder signs, the verifier and the reporter trust.
func (s Settings) Configure(cfg *Config) error {
	if err := s.Settings.Configure(&cfg.Reporter); err != nil {
		return err
	}
	var err error
	if cfg.Provision, err = bus.RetentionFromEnv(cfg.Provision); err != nil {
		return err
	}
	if cfg.Signer, err = sign.SignerFromEnv(); err != nil {
		return err
	}
	if cfg.TrustedKeys, err = sign.VerifiersFromEnv(); err != nil {
		return err
	}
	if cfg.Signer != nil {
		own, err := sign.NewVerifier(cfg.Signer.Public())
		if err != nil {
			return err
		}
		cfg.TrustedKeys = append(cfg.TrustedKeys, own)
	}
	cfg.Reporter.Keys, cfg.Reporter.Signer = cfg.TrustedKeys, cfg.Signer
	// The config's watches run without the webhooks' address.
	if cfg.WebhookAddr != "" || s.WebhookConfig != "" {
		if cfg.Webhook, err = builder.LoadWebhookConfig(s.WebhookConfig); err != nil {
			return err
		}
	}
	if s.Notifications != "" {
		if cfg.Notifications, err = notifier.LoadRules(s.Notifications); err != nil {
			return err
		}
	}
	return nil
}
