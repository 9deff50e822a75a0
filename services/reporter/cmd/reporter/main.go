// Command reporter runs the digestline reporter service and its HTTP API.
package main

import (
	"context"
	"flag"
	"strings"

	"github.com/digestline/digestline/pkg/policy"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/digestline/digestline/services/reporter"
)

func main() {
	addr := flag.String("api-addr", service.Env("API_ADDR", "127.0.0.1:8080"), "HTTP API address (DIGESTLINE_API_ADDR)")
	envs := flag.String("environments", service.Env("ENVIRONMENTS", strings.Join(reporter.DefaultEnvironments, ",")), "promotion chain, first to last (DIGESTLINE_ENVIRONMENTS)")
	tagFormat := flag.String("tag-format", service.Env("TAG_FORMAT", "{env}"), "the tag a promotion moves; {env} is the environment (DIGESTLINE_TAG_FORMAT)")
	required := flag.String("required-referrers", service.Env("REQUIRED_REFERRERS", ""),
		"artifact types an environment requires, e.g. prod=application/spdx+json;staging=… (DIGESTLINE_REQUIRED_REFERRERS)")
	places := flag.String("places", service.Env("PLACES", ""),
		"where environments live when not in the repository builds go to, e.g. prod=registry-b.example/prod/{path}:{env} (DIGESTLINE_PLACES; docs/promotion.md)")
	policyFile := flag.String("policy", service.Env("POLICY", ""), "policy file: each environment's keys and rules in CEL (DIGESTLINE_POLICY; docs/policy.md)")
	service.Main("reporter", "", func(ctx context.Context, d service.Deps) error {
		tokens, err := reporter.TokensFromEnv()
		if err != nil {
			return err
		}
		req, err := reporter.ParseRequiredReferrers(*required)
		if err != nil {
			return err
		}
		chain := strings.Split(*envs, ",")
		where, err := policy.ParsePlaces(*places)
		if err != nil {
			return err
		}
		var pol *policy.Policy
		if *policyFile != "" {
			if pol, err = policy.Load(*policyFile, chain); err != nil {
				return err
			}
		}
		keys, err := sign.VerifiersFromEnv()
		if err != nil {
			return err
		}
		signer, err := sign.SignerFromEnv()
		if err != nil {
			return err
		}
		return reporter.Run(ctx, reporter.Config{Deps: d, APIAddr: *addr, Environments: chain,
			TagFormat: *tagFormat, Places: where, RequiredReferrers: req, Tokens: tokens, Policy: pol, Keys: keys, Signer: signer})
	})
}
