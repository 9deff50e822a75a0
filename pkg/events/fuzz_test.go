package events_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/digestline/digestline/pkg/events"
)

// FuzzParse feeds the decoder every kind of body a subject may carry. An
// event either parses whole — known type and version, a run id, JSON data
// valid against its schema, and the same after a round trip — or is refused
// as ErrInvalid (which consumers dead-letter with the reason). It never
// panics. `go test -fuzz FuzzParse ./events` explores further.
func FuzzParse(f *testing.F) {
	for name, data := range map[events.Name]any{
		events.BuildRequested:     events.BuildRequest{Source: events.Source{Kind: events.SourceDir, Path: "/src"}, Target: "r.example/a:1"},
		events.PromotionRequested: events.PromotionRequest{Repository: "r.example/a", Digest: "sha256:" + strings.Repeat("a", 64), To: "staging"},
		events.DriftDetected:      events.Drift{Target: "r.example/a:1", Tag: "1", Expected: "x", Found: "y"},
	} {
		ev, err := events.NewEvent("/digestline/fuzz", name, "run-1", "r.example/a", data)
		if err != nil {
			f.Fatal(err)
		}
		b, err := json.Marshal(ev)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add([]byte(strings.Replace(string(b), ".v1", ".v2", 1)))                         // unknown version
		f.Add([]byte(strings.Replace(string(b), `"application/json"`, `"text/plain"`, 1))) // wrong content type
		f.Add(b[:len(b)/2])                                                                // truncated
	}
	for _, s := range []string{"", "null", "{}", "[]", `{"specversion":"1.0"}`, "\x00\xff", `{"data":` + strings.Repeat("[", 10000)} {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"/s","type":"dev.digestline.promoted.v1","runid":"r","datacontenttype":"application/json","data":"` +
		strings.Repeat("x", events.MaxEventSize) + `"}`)) // oversized

	f.Fuzz(func(t *testing.T, body []byte) {
		ev, name, err := events.Parse(body)
		if err != nil {
			if !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("a refused body must be ErrInvalid, got %v", err)
			}
			return
		}
		if _, known := events.NameOfType(ev.Type()); !known || events.RunID(ev) == "" || ev.ID() == "" {
			t.Fatalf("parsed an incomplete event: %+v", ev)
		}
		again, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		ev2, name2, err := events.Parse(again)
		if err != nil || name2 != name || ev2.ID() != ev.ID() || events.RunID(ev2) != events.RunID(ev) {
			t.Fatalf("the event changed in a round trip: %v, %s vs %s", err, name2, name)
		}
	})
}
