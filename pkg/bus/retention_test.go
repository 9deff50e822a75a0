package bus_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
)

// TestRetentionIsWhatTheUserSet: the run events and the dead letters keep
// 30 days by default and what DIGESTLINE_*_MAX_AGE/_MAX_BYTES say when
// set; history is kept for good unless DIGESTLINE_HISTORY_MAX_AGE says
// otherwise; provisioning again with new limits applies them to the
// running bus; a value that is not a duration or a size is refused,
// naming the variable.
func TestRetentionIsWhatTheUserSet(t *testing.T) {
	srv := bustest.NewServer(t) // provisioned with the defaults
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	limits := func(stream string) (time.Duration, int64) {
		t.Helper()
		s, err := srv.JetStream.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.Config.MaxAge, info.Config.MaxBytes
	}
	if age, size := limits(events.StreamName); age != 30*24*time.Hour || size != -1 {
		t.Errorf("events by default: %s, %d bytes", age, size)
	}
	if age, _ := limits("KV_" + events.HistoryBucket); age != 0 {
		t.Errorf("history by default expires after %s", age)
	}

	t.Setenv("DIGESTLINE_EVENTS_MAX_AGE", "7d")
	t.Setenv("DIGESTLINE_EVENTS_MAX_BYTES", "2GiB")
	t.Setenv("DIGESTLINE_DLQ_MAX_AGE", "90d")
	t.Setenv("DIGESTLINE_HISTORY_MAX_AGE", "8760h")
	opts, err := bus.RetentionFromEnv(bus.ProvisionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.Provision(ctx, srv.JetStream, opts); err != nil {
		t.Fatal(err)
	}
	for stream, want := range map[string]struct {
		age  time.Duration
		size int64
	}{
		events.StreamName:               {7 * 24 * time.Hour, 2 << 30},
		events.RunLogStream:             {7 * 24 * time.Hour, 2 << 30},
		events.DeadLetterStream:         {90 * 24 * time.Hour, -1},
		"KV_" + events.HistoryBucket:    {365 * 24 * time.Hour, -1},
		"KV_" + events.PromotionsBucket: {0, -1}, // the current records are never aged out
	} {
		if age, size := limits(stream); age != want.age || size != want.size {
			t.Errorf("%s keeps %s and %d bytes, want %s and %d", stream, age, size, want.age, want.size)
		}
	}

	for name, value := range map[string]string{"DIGESTLINE_EVENTS_MAX_AGE": "a month", "DIGESTLINE_DLQ_MAX_BYTES": "lots", "DIGESTLINE_EVENTS_MAX_BYTES": "-1"} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(name, value)
			if _, err := bus.RetentionFromEnv(bus.ProvisionOptions{}); err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("%s=%q: %v, want an error naming the variable", name, value, err)
			}
		})
	}
}
