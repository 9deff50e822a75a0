package policy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/policy"
)

// TestFreezeWindows: a window freezes the times it says, in its time zone,
// across a daylight-saving change, and a freeze ends when the last of the
// windows that follow each other without a gap ends.
func TestFreezeWindows(t *testing.T) {
	t.Parallel()
	p, err := policy.Load(write(t, `environments:
  prod:
    emergency: [oncall, cto]
    freezes:
      - name: nights
        reason: no one is on call
        timezone: America/New_York
        days: [mon, tue, wed, thu, fri]
        start: "22:00"
        end: "06:00"
      - name: weekend
        timezone: America/New_York
        days: [saturday, sun]
      - name: year-end
        reason: holidays
        timezone: Europe/Berlin
        from: 2026-12-23T18:00
        until: 2027-01-04
  staging:
    freezes:
      - name: lunch
        start: "12:00"
        end: "13:00"
`), chain)
	if err != nil {
		t.Fatal(err)
	}
	utc := func(s string) time.Time {
		t.Helper()
		at, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return at
	}
	for _, tc := range []struct {
		env, at string
		window  string // "" when not frozen
		ends    string
	}{
		// US daylight saving starts on Sunday 2026-03-08 at 02:00 (EST,
		// -05:00, then EDT, -04:00). Thursday night, 22:30 EST.
		{"prod", "2026-03-06T03:30:00Z", "nights", "2026-03-06T11:00:00Z"},
		{"prod", "2026-03-06T11:30:00Z", "", ""}, // 06:30 EST, Friday
		// Friday 23:00 EST: nights, then the weekend, until Monday 00:00,
		// which is EDT by then (04:00Z, not 05:00Z).
		{"prod", "2026-03-07T04:00:00Z", "nights", "2026-03-09T04:00:00Z"},
		{"prod", "2026-03-08T12:00:00Z", "weekend", "2026-03-09T04:00:00Z"},
		// Monday 05:30 EDT (09:30Z) is not a night: Sunday has none.
		{"prod", "2026-03-09T09:30:00Z", "", ""},
		// Monday 22:15 EDT: nights, until Tuesday 06:00 EDT (10:00Z).
		{"prod", "2026-03-10T02:15:00Z", "nights", "2026-03-10T10:00:00Z"},
		// Tuesday 05:59 EDT, the morning after.
		{"prod", "2026-03-10T09:59:00Z", "nights", "2026-03-10T10:00:00Z"},
		// Berlin: 2026-12-23 18:00 CET is 17:00Z. The holidays end on
		// 2027-01-04 00:00 CET, Sunday 18:00 in New York: the weekend
		// goes on there until Monday 00:00 EST.
		{"prod", "2026-12-23T16:59:00Z", "", ""},
		{"prod", "2026-12-23T17:00:00Z", "year-end", "2027-01-04T05:00:00Z"},
		// A window with no zone is in UTC, every day.
		{"staging", "2026-03-09T12:30:00Z", "lunch", "2026-03-09T13:00:00Z"},
		{"staging", "2026-03-09T13:00:00Z", "", ""},
		{"dev", "2026-03-07T04:00:00Z", "", ""},
	} {
		w, ends, ok := p.Frozen(tc.env, utc(tc.at))
		switch {
		case tc.window == "" && ok:
			t.Errorf("%s at %s: frozen by %s until %s, want not frozen", tc.env, tc.at, w.Name, ends)
		case tc.window != "" && (!ok || w.Name != tc.window || !ends.Equal(utc(tc.ends))):
			t.Errorf("%s at %s: frozen %v by %q until %s, want by %s until %s", tc.env, tc.at, ok, w.Name, ends.UTC().Format(time.RFC3339), tc.window, tc.ends)
		}
	}
	if got := p.Emergency("prod"); strings.Join(got, ",") != "oncall,cto" {
		t.Errorf("prod's emergency approvers: %v", got)
	}
}

// TestFreezeWindowsRefuseWhatIsUnclear: a window that cannot be read is
// refused at start, naming it.
func TestFreezeWindowsRefuseWhatIsUnclear(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ freeze, says string }{
		"no name":         {"days: [sat]", "a freeze needs a name"},
		"an unknown zone": {"name: a\n        timezone: Mars/Olympus\n        days: [sat]", `timezone "Mars/Olympus"`},
		"an unknown day":  {"name: a\n        days: [sabbath]", `day "sabbath"`},
		"a start alone":   {"name: a\n        start: \"09:00\"", "start and end go together"},
		"a bad time":      {"name: a\n        start: \"25:00\"\n        end: \"26:00\"", `"25:00": want HH:MM`},
		"both kinds":      {"name: a\n        days: [sat]\n        from: 2026-12-24", "not both"},
		"until before":    {"name: a\n        from: 2026-12-24\n        until: 2026-12-23", "is not after from"},
		"neither kind":    {"name: a\n        reason: why", "give from and until"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := policy.Load(write(t, "environments:\n  prod:\n    freezes:\n      - "+tc.freeze+"\n"), chain)
			if err == nil || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "environment prod") {
				t.Errorf("%v, want an error naming environment prod and saying %q", err, tc.says)
			}
		})
	}
}
