// Command notifier runs the digestline notifier service: the webhooks of
// the notifications file that DIGESTLINE_NOTIFICATIONS names.
package main

import (
	"context"
	"errors"
	"os"

	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/services/notifier"
)

func main() {
	service.Main("notifier", "127.0.0.1:8084", func(ctx context.Context, d service.Deps) error {
		path := os.Getenv("DIGESTLINE_NOTIFICATIONS")
		if path == "" {
			return errors.New("DIGESTLINE_NOTIFICATIONS names no notifications file (docs/day-two.md, Notifications)")
		}
		rules, err := notifier.LoadRules(path)
		if err != nil {
			return err
		}
		return notifier.Run(ctx, notifier.Config{Deps: d, Rules: rules, PageURL: os.Getenv("DIGESTLINE_API_URL")})
	})
}
