package bus

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Retention bounds what a stream keeps: messages older than MaxAge, and the
// oldest messages past MaxBytes, are removed (zero: no bound).
type Retention struct {
	MaxAge   time.Duration
	MaxBytes int64
}

// The default retention: a run's events and the dead letters for 30 days
// (a month of runs to look back on, dead letters long enough to replay
// after a holiday), promotion records and history for good.
var (
	DefaultEventRetention      = Retention{MaxAge: 30 * 24 * time.Hour}
	DefaultDeadLetterRetention = Retention{MaxAge: 30 * 24 * time.Hour}
)

// RetentionFromEnv reads the retention a user set, over the defaults:
// DIGESTLINE_EVENTS_MAX_AGE and _MAX_BYTES (the run events),
// DIGESTLINE_DLQ_MAX_AGE and _MAX_BYTES (the dead letters),
// DIGESTLINE_HISTORY_MAX_AGE (promotion history and decisions; unset keeps
// them for good). Every process that provisions the bus must be given the
// same values, as with DIGESTLINE_NATS_REPLICAS.
func RetentionFromEnv(o ProvisionOptions) (ProvisionOptions, error) {
	for _, s := range []struct {
		prefix string
		r      *Retention
	}{{"DIGESTLINE_EVENTS", &o.Events}, {"DIGESTLINE_DLQ", &o.DeadLetters}, {"DIGESTLINE_HISTORY", &o.History}} {
		if v := os.Getenv(s.prefix + "_MAX_AGE"); v != "" {
			d, err := parseAge(v)
			if err != nil {
				return o, fmt.Errorf("%s_MAX_AGE %q: %w", s.prefix, v, err)
			}
			s.r.MaxAge = d
		}
		if s.prefix == "DIGESTLINE_HISTORY" {
			continue // a size bound would drop the oldest records of a chain
		}
		if v := os.Getenv(s.prefix + "_MAX_BYTES"); v != "" {
			n, err := parseBytes(v)
			if err != nil {
				return o, fmt.Errorf("%s_MAX_BYTES %q: %w", s.prefix, v, err)
			}
			s.r.MaxBytes = n
		}
	}
	return o, nil
}

// parseAge reads a duration, with "d" for days: 720h, 30d, 90d12h.
func parseAge(s string) (time.Duration, error) {
	days := time.Duration(0)
	if before, after, ok := strings.Cut(s, "d"); ok {
		n, err := strconv.Atoi(before)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("want a duration such as 30d or 720h")
		}
		days, s = time.Duration(n)*24*time.Hour, after
	}
	d := time.Duration(0)
	if s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("want a duration such as 30d or 720h")
		}
	}
	if d+days < time.Minute {
		return 0, fmt.Errorf("want at least a minute, such as 30d or 720h")
	}
	return days + d, nil
}

// parseBytes reads a size: 1048576, 512MiB, 10GiB, 2TB.
func parseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		n      int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(num), u.n
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("want a size such as 10GiB or 512MiB")
	}
	return n * mult, nil
}
