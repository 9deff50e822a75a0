package events_test

import (
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/events"
)

// BenchmarkParse is what reading one stored event costs a consumer: a
// push.completed of a small image, its data already known valid (as it
// is once the publisher in the same process checked it).
func BenchmarkParse(b *testing.B) {
	ev, err := events.NewEvent("bench", events.VerifyCompleted, "7f1c2d3e-4b5a-4c6d-8e9f-0a1b2c3d4e5f", "registry.example/app", events.VerifyResult{
		Target: "registry.example/app:1", Digest: "sha256:2b4b36480be0aa1e7e0c0e3a9f1c2d3e4b5a6c7d8e9f0a1b2c3d4e5f60718293", Descriptors: 3, BytesHashed: 750,
		Checks:      []string{"[VERIFY] digest match", "[VERIFY] manifest descriptor count: 3", "[VERIFY] bytes hashed: 750", "[VERIFY] graph matches the build"},
		RequestedAt: time.Unix(1765000000, 0).UTC()})
	if err != nil {
		b.Fatal(err)
	}
	body, err := ev.MarshalJSON()
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := events.Parse(body); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := events.Parse(body); err != nil {
			b.Fatal(err)
		}
	}
}
