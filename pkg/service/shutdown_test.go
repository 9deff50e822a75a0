package service

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/bus/bustest"
)

// TestShutdownDrainsWithinTheGrace: on the signal, a service whose work
// finishes exits cleanly; one whose work hangs is cut off at the grace.
func TestShutdownDrainsWithinTheGrace(t *testing.T) {
	ns := bustest.NewServer(t)
	clearNATSEnv(t)
	p := process{natsURL: ns.URL(), logLevel: "error", healthAddr: "127.0.0.1:0", grace: 300 * time.Millisecond}

	for _, tc := range []struct {
		name    string
		work    func(ctx context.Context) // what the service does after the signal
		wantErr string
	}{
		{"finishes its work", func(ctx context.Context) { <-ctx.Done(); time.Sleep(50 * time.Millisecond) }, ""},
		{"hangs", func(ctx context.Context) { <-ctx.Done(); select {} }, "did not finish within 300ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			started := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				done <- p.run(ctx, "test", func(ctx context.Context, _ Deps) error { close(started); tc.work(ctx); return nil })
			}()
			<-started
			cancel() // SIGTERM
			select {
			case err := <-done:
				if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
					t.Fatalf("run = %v, want %q", err, tc.wantErr)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the process did not exit after the grace")
			}
		})
	}
}
