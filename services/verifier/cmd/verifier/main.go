// Command verifier runs the digestline verifier service.
package main

import (
	"context"

	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/digestline/digestline/pkg/verify"
	"github.com/digestline/digestline/services/verifier"
)

func main() {
	service.Main("verifier", "127.0.0.1:8083", func(ctx context.Context, d service.Deps) error {
		keys, err := sign.VerifiersFromEnv()
		if err != nil {
			return err
		}
		return verifier.Run(ctx, verifier.Config{Deps: d, Proof: verify.Options{Keys: keys}})
	})
}
