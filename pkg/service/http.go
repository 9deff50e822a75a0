package service

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// ShutdownHTTP stops srv gracefully, giving in-flight requests up to grace to
// finish, then closes whatever is left: stopping never fails because a client
// was slow.
func ShutdownHTTP(srv *http.Server, grace time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return srv.Close()
	}
	return err
}
