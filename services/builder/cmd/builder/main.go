// Command builder runs the digestline builder service.
package main

import (
	"context"

	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/services/builder"
)

func main() {
	service.Main("builder", "127.0.0.1:8081", func(ctx context.Context, d service.Deps) error {
		created, err := oci.SourceDateEpoch()
		if err != nil {
			return err
		}
		return builder.Run(ctx, builder.Config{Deps: d, Created: created, WorkDir: service.Env("WORK_DIR", "")})
	})
}
