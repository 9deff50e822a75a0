package dev

import (
	"strings"

	"github.com/digestline/digestline/pkg/policy"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/digestline/digestline/services/builder"
	"github.com/digestline/digestline/services/reporter"
)

// Settings are what `digestline dev` is given as text (flags or DIGESTLINE_
// variables) and Configure reads into a Config: the promotion chain, the
// required referrers, the places, the policy file and the webhook rules.
type Settings struct {
	Environments      string // comma-separated, first to last
	RequiredReferrers string // env=artifactType,…
	Places            string // env=REGISTRY/PATH[:TAG];…
	PolicyFile        string
	WebhookConfig     string
}

// DefaultEnvironments is the promotion chain when none is named.
func DefaultEnvironments() string { return strings.Join(reporter.DefaultEnvironments, ",") }

// Configure reads s, the API tokens and the signing and trusted keys of
// the environment (DIGESTLINE_API_TOKEN, DIGESTLINE_SIGNING_KEY,
// DIGESTLINE_TRUSTED_KEYS) into cfg. What the builder signs, the verifier
// and the reporter trust.
func (s Settings) Configure(cfg *Config) error {
	var err error
	r := &cfg.Reporter
	if r.Tokens, err = reporter.TokensFromEnv(); err != nil {
		return err
	}
	if r.RequiredReferrers, err = reporter.ParseRequiredReferrers(s.RequiredReferrers); err != nil {
		return err
	}
	r.Environments = strings.Split(s.Environments, ",")
	if r.Places, err = policy.ParsePlaces(s.Places); err != nil {
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
	r.Keys, r.Signer = cfg.TrustedKeys, cfg.Signer
	if s.PolicyFile != "" {
		if r.Policy, err = policy.Load(s.PolicyFile, r.Environments); err != nil {
			return err
		}
	}
	if cfg.WebhookAddr != "" {
		if cfg.Webhook, err = builder.LoadWebhookConfig(s.WebhookConfig); err != nil {
			return err
		}
	}
	return nil
}
