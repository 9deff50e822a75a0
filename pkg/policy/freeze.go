package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // the zones freezes name, in an image with no zoneinfo too (FROM scratch)
)

// Window is a time when promotions into an environment are frozen, from
// the policy file (environments.<env>.freezes): weekly (on some days,
// all day or between two times of day, one that ends before it starts
// crossing midnight) or once (from one local time until another). Times
// are in the window's time zone, daylight saving included.
type Window struct {
	Name   string
	Reason string
	zone   *time.Location
	// once: from ≤ t < until.
	from, until time.Time
	// weekly: on days (every day when none is set), from start to end,
	// in minutes after midnight; both zero: the whole day.
	days       [7]bool
	start, end int
	weekly     bool
}

// freezeFile is a window as the policy file writes it.
type freezeFile struct {
	Name     string   `yaml:"name"`
	Reason   string   `yaml:"reason"`
	Timezone string   `yaml:"timezone"`
	Days     []string `yaml:"days"`
	Start    string   `yaml:"start"`
	End      string   `yaml:"end"`
	From     string   `yaml:"from"`
	Until    string   `yaml:"until"`
}

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// window reads f, saying what is wrong with it.
func (f freezeFile) window() (Window, error) {
	w := Window{Name: f.Name, Reason: f.Reason, zone: time.UTC}
	if f.Name == "" {
		return w, fmt.Errorf("a freeze needs a name")
	}
	if f.Timezone != "" {
		zone, err := time.LoadLocation(f.Timezone)
		if err != nil {
			return w, fmt.Errorf("freeze %s: timezone %q: %w (an IANA name, e.g. Europe/Berlin)", f.Name, f.Timezone, err)
		}
		w.zone = zone
	}
	once, weekly := f.From != "" || f.Until != "", len(f.Days) > 0 || f.Start != "" || f.End != ""
	switch {
	case once && weekly:
		return w, fmt.Errorf("freeze %s: from/until (once) or days/start/end (weekly), not both", f.Name)
	case once:
		var err error
		if w.from, err = localTime(f.From, w.zone); err != nil {
			return w, fmt.Errorf("freeze %s: from: %w", f.Name, err)
		}
		if w.until, err = localTime(f.Until, w.zone); err != nil {
			return w, fmt.Errorf("freeze %s: until: %w", f.Name, err)
		}
		if !w.until.After(w.from) {
			return w, fmt.Errorf("freeze %s: until %s is not after from %s", f.Name, f.Until, f.From)
		}
	case weekly:
		w.weekly = true
		for _, d := range f.Days {
			d = strings.ToLower(d)
			wd, ok := weekdays[d[:min(3, len(d))]]
			if !ok || len(d) > 3 && d != strings.ToLower(wd.String()) {
				return w, fmt.Errorf("freeze %s: day %q: want mon, tue, wed, thu, fri, sat or sun", f.Name, d)
			}
			w.days[wd] = true
		}
		if len(f.Days) == 0 {
			w.days = [7]bool{true, true, true, true, true, true, true}
		}
		if (f.Start == "") != (f.End == "") {
			return w, fmt.Errorf("freeze %s: start and end go together (neither: the whole day)", f.Name)
		}
		if f.Start != "" {
			var err error
			if w.start, err = clock(f.Start); err != nil {
				return w, fmt.Errorf("freeze %s: start: %w", f.Name, err)
			}
			if w.end, err = clock(f.End); err != nil {
				return w, fmt.Errorf("freeze %s: end: %w", f.Name, err)
			}
			if w.start == w.end {
				return w, fmt.Errorf("freeze %s: start and end are both %s (leave both out for the whole day)", f.Name, f.Start)
			}
		}
	default:
		return w, fmt.Errorf("freeze %s: give from and until (once), or days and/or start and end (weekly)", f.Name)
	}
	return w, nil
}

// localTime reads 2006-01-02T15:04 (or a date: its midnight) in zone.
func localTime(s string, zone *time.Location) (time.Time, error) {
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, zone); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: want 2006-01-02T15:04 (local to the freeze's timezone) or 2006-01-02", s)
}

// clock reads HH:MM as minutes after midnight (24:00 is midnight at the
// day's end).
func clock(s string) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 || hh*60+mm > 24*60 {
		return 0, fmt.Errorf("%q: want HH:MM, 00:00 to 24:00", s)
	}
	return hh*60 + mm, nil
}

// covers reports whether w freezes t, and when that part of it ends.
func (w Window) covers(t time.Time) (bool, time.Time) {
	if !w.weekly {
		return !t.Before(w.from) && t.Before(w.until), w.until
	}
	lt := t.In(w.zone)
	y, m, d := lt.Date()
	mins, day := lt.Hour()*60+lt.Minute(), lt.Weekday()
	at := func(days, minutes int) time.Time { return time.Date(y, m, d+days, 0, minutes, 0, 0, w.zone) }
	switch {
	case w.start == 0 && w.end == 0: // the whole day
		return w.days[day], at(1, 0)
	case w.start < w.end:
		return w.days[day] && mins >= w.start && mins < w.end, at(0, w.end)
	case w.days[day] && mins >= w.start: // crossing midnight, its evening
		return true, at(1, w.end)
	default: // crossing midnight, the morning after
		return w.days[(day+6)%7] && mins < w.end, at(0, w.end)
	}
}

// Frozen returns the freeze window of env that covers t, and when the
// freeze ends: windows that follow each other without a gap (a weekend's
// two days, a nightly window into a weekend) end when the last does.
func (p *Policy) Frozen(env string, t time.Time) (Window, time.Time, bool) {
	if p == nil {
		return Window{}, time.Time{}, false
	}
	for _, w := range p.freezes[env] {
		ok, ends := w.covers(t)
		if !ok {
			continue
		}
		for range 64 { // a freeze that never ends is not one a promotion waits out
			next := false
			for _, other := range p.freezes[env] {
				if ok, later := other.covers(ends); ok && later.After(ends) {
					ends, next = later, true
				}
			}
			if !next {
				break
			}
		}
		return w, ends, true
	}
	return Window{}, time.Time{}, false
}

// HasWindows reports whether any environment has freeze windows.
func (p *Policy) HasWindows() bool {
	if p == nil {
		return false
	}
	for _, ws := range p.freezes {
		if len(ws) > 0 {
			return true
		}
	}
	return false
}

// Emergency names the API tokens whose approval lets a promotion into env
// through a freeze.
func (p *Policy) Emergency(env string) []string {
	if p == nil {
		return nil
	}
	return p.emergency[env]
}
