package registry_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/digestline/digestline/pkg/registry/registrytest"
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

// BenchmarkBigPush pushes an image of one 128 MiB incompressible layer to
// distribution v3 on loopback, a fresh repository each time: straight to
// it (it takes chunks: the blob goes in 16 MiB chunks), and through the
// quirk proxy as it is and refusing chunks (the blob goes up streamed).
// A registry that refuses chunks should cost nothing against one that
// takes them: compare the last two.
func BenchmarkBigPush(b *testing.B) {
	g, l := bigImage(b, "big push", 128<<20)
	registryHost := registrytest.Distribution(b, registrytest.DistributionV3)
	for _, tc := range []struct {
		name string
		host string
	}{
		{"direct", registryHost},
		{"proxy", registrytest.Proxy(b, registryHost)},
		{"proxy-refusing-chunks", registrytest.Proxy(b, registryHost, registrytest.NoChunkedUploads)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			client := newClient()
			b.SetBytes(g.Root.Size + g.Blobs()[0].Size + g.Blobs()[1].Size)
			i := 0
			for b.Loop() {
				i++
				res, err := client.Push(context.Background(), mustRef(b, fmt.Sprintf("%s/%s/app%d:1", tc.host, tc.name, i)), g, l, nil)
				if err != nil {
					b.Fatal(err)
				}
				if res.Uploaded != 2 {
					b.Fatalf("uploaded %d blobs, want 2", res.Uploaded)
				}
			}
		})
	}
}
