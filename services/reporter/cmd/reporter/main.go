// Command reporter runs the digestline reporter service and its HTTP API.
package main

import (
	"context"
	"flag"
	"strings"

	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/services/reporter"
)

func main() {
	addr := flag.String("api-addr", service.Env("API_ADDR", "127.0.0.1:8080"), "HTTP API address (DIGESTLINE_API_ADDR)")
	envs := flag.String("environments", service.Env("ENVIRONMENTS", strings.Join(reporter.DefaultEnvironments, ",")), "promotion chain, first to last (DIGESTLINE_ENVIRONMENTS)")
	service.Main("reporter", func(ctx context.Context, d service.Deps) error {
		return reporter.Run(ctx, reporter.Config{Deps: d, APIAddr: *addr, Environments: strings.Split(*envs, ",")})
	})
}
