package registry_test

import (
	"context"
	"testing"

	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/registry/registrytest"
)

// TestProbeFindsWhatTheRegistrySupports probes registries with and without
// the referrers API, one that refuses chunks and one without the digest
// header, and checks the probe left nothing behind.
func TestProbeFindsWhatTheRegistrySupports(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                                   string
		host                                   func(*testing.T) string
		referrers, chunks, digestHeader, pages registry.Support
	}{
		{"olareg", func(t *testing.T) string { return newOlareg(t) }, registry.Yes, registry.Yes, registry.Yes, registry.Yes},
		{"no referrers API", func(t *testing.T) string { return newRegistry(t) }, registry.No, registry.Yes, registry.Yes, registry.No},
		{"refuses chunks", func(t *testing.T) string { return registrytest.Proxy(t, newOlareg(t), registrytest.NoChunkedUploads) }, registry.Yes, registry.No, registry.Yes, registry.Yes},
		{"no digest header", func(t *testing.T) string { return registrytest.Proxy(t, newOlareg(t), registrytest.NoDigestHeader) }, registry.Yes, registry.Yes, registry.No, registry.Yes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			host := tc.host(t)
			client := newClient()
			ctx := context.Background()
			for _, tag := range []string{"a", "b"} {
				registrytest.Push(t, client, host+"/team/app:"+tag, "probed "+tag)
			}
			repo := mustRef(t, host+"/team/app:a").Context()
			r, err := client.Open(ctx, repo, false)
			if err != nil {
				t.Fatal(err)
			}
			before, err := r.Tags(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			caps, err := client.Probe(ctx, repo)
			if err != nil {
				t.Fatal(err)
			}
			if caps.Auth != "none" || caps.ReferrersAPI.Support != tc.referrers || caps.ChunkedUploads.Support != tc.chunks ||
				caps.DigestHeader.Support != tc.digestHeader || caps.TagPagination.Support != tc.pages {
				t.Fatalf("probe found:\n%s", caps)
			}
			after, err := r.Tags(ctx, 0)
			if err != nil || len(after) != len(before) {
				t.Fatalf("tags %v after the probe, %v before (%v)", after, before, err)
			}
		})
	}
}
