// Command reporter runs the digestline reporter service and its HTTP API.
package main

import (
	"context"
	"flag"
	"strings"

	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/digestline/digestline/services/reporter"
)

func main() {
	addr := flag.String("api-addr", service.Env("API_ADDR", "127.0.0.1:8080"), "HTTP API address (DIGESTLINE_API_ADDR)")
	var set reporter.Settings
	flag.StringVar(&set.Environments, "environments", service.Env("ENVIRONMENTS", strings.Join(reporter.DefaultEnvironments, ",")), "promotion chain, first to last (DIGESTLINE_ENVIRONMENTS)")
	tagFormat := flag.String("tag-format", service.Env("TAG_FORMAT", "{env}"), "the tag a promotion moves; {env} is the environment (DIGESTLINE_TAG_FORMAT)")
	flag.StringVar(&set.RequiredReferrers, "required-referrers", service.Env("REQUIRED_REFERRERS", ""),
		"artifact types an environment requires, e.g. prod=application/spdx+json;staging=… (DIGESTLINE_REQUIRED_REFERRERS)")
	flag.StringVar(&set.Places, "places", service.Env("PLACES", ""),
		"where environments live when not in the repository builds go to, e.g. prod=registry-b.example/prod/{path}:{env} (DIGESTLINE_PLACES; docs/promotion.md)")
	flag.StringVar(&set.TraceURL, "trace-url", service.Env("TRACE_URL", ""), "a trace's page, with {traceId}: run pages link their trace there, e.g. http://jaeger:16686/trace/{traceId} (DIGESTLINE_TRACE_URL)")
	flag.StringVar(&set.GCFile, "gc", service.Env("GC", ""), "garbage collection schedule: which repositories, how often, dry run or not (DIGESTLINE_GC; docs/day-two.md)")
	flag.StringVar(&set.PolicyFile, "policy", service.Env("POLICY", ""), "policy file: each environment's keys and rules in CEL (DIGESTLINE_POLICY; docs/policy.md)")
	service.Main("reporter", "", func(ctx context.Context, d service.Deps) error {
		cfg := reporter.Config{Deps: d, APIAddr: *addr, TagFormat: *tagFormat}
		if err := set.Configure(&cfg); err != nil {
			return err
		}
		var err error
		if cfg.Keys, err = sign.VerifiersFromEnv(); err != nil {
			return err
		}
		if cfg.Signer, err = sign.SignerFromEnv(); err != nil {
			return err
		}
		return reporter.Run(ctx, cfg)
	})
}
