// Command pusher runs the digestline pusher service.
package main

import (
	"context"

	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/digestline/digestline/pkg/verify"
	"github.com/digestline/digestline/services/pusher"
)

func main() {
	service.Main("pusher", "127.0.0.1:8082", func(ctx context.Context, d service.Deps) error {
		// A promotion copied to another registry is proven there with
		// these keys before its tag moves.
		keys, err := sign.VerifiersFromEnv()
		if err != nil {
			return err
		}
		return pusher.Run(ctx, pusher.Config{Deps: d, Proof: verify.Options{Keys: keys}})
	})
}
