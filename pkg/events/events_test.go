package events_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/digestline/digestline/pkg/bus/bustest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
)

func TestNamesDeriveTypeAndSubject(t *testing.T) {
	t.Parallel()
	if got := events.BuildRequested.Type(); got != "dev.digestline.build.requested.v1" {
		t.Errorf("Type() = %q", got)
	}
	if got := events.PushStage.Subject("run-1"); got != "digestline.push.stage.run-1" {
		t.Errorf("Subject() = %q", got)
	}
	if got := events.Promoted.Filter(); got != "digestline.promoted.*" {
		t.Errorf("Filter() = %q", got)
	}
	for _, bad := range []string{"", "a.b", "a b", "*", ">", strings.Repeat("r", 129)} {
		if events.CheckRunID(bad) == nil {
			t.Errorf("run id %q accepted: it is not one subject token", bad)
		}
	}
	for _, typ := range []string{"dev.digestline.build.requested.v2", "dev.digestline.nope.v1", "com.example.build.requested.v1"} {
		if _, ok := events.NameOfType(typ); ok {
			t.Errorf("NameOfType(%q) accepted an unknown type", typ)
		}
	}
}

func TestParseRejectsWhatTheContractForbids(t *testing.T) {
	t.Parallel()
	good, err := events.NewEvent("/test", events.BuildRequested, "run-1", "app", bustest.BuildRequest())
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(m map[string]any)) []byte {
		b, _ := json.Marshal(good)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		f(m)
		out, _ := json.Marshal(m)
		return out
	}
	cases := map[string]struct {
		body []byte
		want string
	}{
		"not json":           {[]byte("{nope"), "not a structured CloudEvent"},
		"no id":              {mutate(func(m map[string]any) { delete(m, "id") }), "id"},
		"unknown type":       {mutate(func(m map[string]any) { m["type"] = "dev.digestline.build.exploded.v1" }), "unknown event type"},
		"future version":     {mutate(func(m map[string]any) { m["type"] = "dev.digestline.build.requested.v9" }), "unknown event type"},
		"no run id":          {mutate(func(m map[string]any) { delete(m, "runid") }), "runid"},
		"wrong content type": {mutate(func(m map[string]any) { m["datacontenttype"] = "text/plain" }), "text/plain"},
		"missing field":      {mutate(func(m map[string]any) { delete(m["data"].(map[string]any), "target") }), "target"},
		"bad source kind": {mutate(func(m map[string]any) {
			m["data"].(map[string]any)["source"] = map[string]any{"kind": "ftp"}
		}), "kind"},
		"wrong field type": {mutate(func(m map[string]any) { m["data"].(map[string]any)["target"] = 42 }), "target"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, _, err := events.Parse(tc.body)
			if !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("Parse() error = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
	b, _ := json.Marshal(good)
	if _, name, err := events.Parse(b); err != nil || name != events.BuildRequested {
		t.Fatalf("Parse(valid) = %q, %v", name, err)
	}
}

func TestFollowDerivesStableIDs(t *testing.T) {
	t.Parallel()
	parent, _ := events.NewEvent("/test", events.BuildRequested, "run-1", "app", bustest.BuildRequest())
	data := events.NewFailure(failure.Errorf(failure.Input, "fix it", "x"))
	a, _ := events.Follow("/b", parent, events.BuildFailed, "", data)
	b, _ := events.Follow("/b", parent, events.BuildFailed, "", data)
	c, _ := events.Follow("/b", parent, events.BuildFailed, "other", data)
	if a.ID() != b.ID() {
		t.Errorf("same parent, name and key gave ids %s and %s", a.ID(), b.ID())
	}
	if a.ID() == c.ID() {
		t.Error("different keys gave the same id")
	}
	if events.RunID(a) != "run-1" || a.Subject() != "app" {
		t.Errorf("run id %q, subject %q not carried over", events.RunID(a), a.Subject())
	}
}
