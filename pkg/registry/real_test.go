package registry_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/tooltest"
	"github.com/google/go-containerregistry/pkg/name"
)

// realRegistry runs Debian's docker-registry (distribution 2.8, which has no
// referrers API) on a free port with its storage in a temporary directory.
func realRegistry(t *testing.T) string {
	t.Helper()
	bin := tooltest.Find(t, "docker-registry")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	dir := t.TempDir()
	config := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: %s}, delete: {enabled: true}}
http: {addr: %s}
`, filepath.Join(dir, "data"), addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "serve", config)
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker-registry did not start on %s", addr)
		}
	}
}

func TestPushToARealRegistryWithoutReferrersAPI(t *testing.T) {
	t.Parallel()
	host := realRegistry(t)
	ctx := context.Background()
	g, l := imageWithSBOM(t)
	client := newClient(registry.WithChunking(128, 64<<10)) // every blob above 128 bytes goes in chunks
	ref, _ := name.ParseReference(host + "/team/app:lab")
	rec := &recorder{}
	if _, err := client.Push(ctx, ref, g, l, rec.observe); err != nil {
		t.Fatal(err)
	}
	if d := rec.final()[registry.StageReferrers].Detail; d != "1 attached (0 via referrers API, 1 via fallback tag, 0 present)" {
		t.Errorf("referrers stage: %q", d)
	}
	repo, err := client.Open(ctx, ref.Context(), true)
	if err != nil {
		t.Fatal(err)
	}
	refs, err := repo.Referrers(ctx, g.Root.Digest)
	if err != nil || len(refs) != 1 || refs[0].ArtifactType != oci.MediaTypeSPDX {
		t.Fatalf("referrers %+v, %v", refs, err)
	}

	// Several writers attaching at once all end up in the fallback index.
	const writers = 6
	subject := g.Root
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		art, err := oci.BuildArtifact(ctx, oci.ArtifactConfig{ArtifactType: "application/vnd.example.sig",
			Annotations: map[string]string{"n": fmt.Sprint(i)}, Subject: &subject}, l)
		if err != nil {
			t.Fatal(err)
		}
		byDigest, _ := name.ParseReference(host + "/team/app@" + art.Root.Digest.String())
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := newClient().Push(ctx, byDigest, art, l, nil)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if refs, err = repo.Referrers(ctx, g.Root.Digest); err != nil || len(refs) != writers+1 {
		t.Fatalf("%d referrers after %d concurrent attachers (+ the SBOM), %v", len(refs), writers, err)
	}
}
