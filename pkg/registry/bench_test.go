package registry_test

import (
	"context"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

// BenchmarkPush pushes a small image to an in-memory registry over HTTP:
// cold (an empty registry each time) and warm (already there). It reports the
// requests each push makes.
func BenchmarkPush(b *testing.B) {
	host := newRegistry(b)
	g, l := buildImage(b, "bench")
	ctx := context.Background()
	client := newClient()

	b.Run("cold", func(b *testing.B) {
		var reqs int
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			fresh := newRegistry(b) // an empty registry: every blob is uploaded
			ref, _ := name.ParseReference(fresh + "/cold/app:lab")
			b.StartTimer()
			res, err := client.Push(ctx, ref, g, l, nil)
			if err != nil {
				b.Fatal(err)
			}
			if res.Uploaded != len(g.Blobs()) {
				b.Fatalf("cold push uploaded %d of %d blobs", res.Uploaded, len(g.Blobs()))
			}
			reqs = res.Requests
		}
		b.ReportMetric(float64(reqs), "requests/push")
	})
	b.Run("warm", func(b *testing.B) {
		ref, _ := name.ParseReference(host + "/warm/app:lab")
		if _, err := client.Push(ctx, ref, g, l, nil); err != nil {
			b.Fatal(err)
		}
		var reqs int
		for b.Loop() {
			res, err := client.Push(ctx, ref, g, l, nil)
			if err != nil {
				b.Fatal(err)
			}
			reqs = res.Requests
		}
		b.ReportMetric(float64(reqs), "requests/push")
	})
}
