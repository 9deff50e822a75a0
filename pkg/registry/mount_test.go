package registry_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry/registrytest"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// appOnBase builds an image on base (already in l) that records the base's
// name and digest, as the builder does.
func appOnBase(t *testing.T, l *oci.Layout, base oci.Graph, baseName string) oci.Graph {
	t.Helper()
	ctx := context.Background()
	var m v1.Manifest
	raw, err := oci.ReadManifest(ctx, l, base.Root)
	if err != nil || json.Unmarshal(raw, &m) != nil {
		t.Fatal(err)
	}
	var cfg v1.Image
	rc, _ := l.Open(ctx, m.Config.Digest)
	_ = json.NewDecoder(rc).Decode(&cfg)
	_ = rc.Close()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "app"), []byte("the app"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, _ := oci.ParsePlatform("")
	g, err := oci.BuildImage(ctx, src, oci.ImageConfig{Platform: p,
		Base: &oci.BaseImage{Name: baseName, Digest: base.Root.Digest, Manifest: m, Config: cfg}}, l)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestPushMountsBaseLayersFromTheirRepository(t *testing.T) {
	t.Parallel()
	refuseMounts := func(r *http.Request) (int, http.Header, bool) {
		return http.StatusUnauthorized, nil, r.Method == http.MethodPost && r.URL.Query().Get("mount") != ""
	}
	cases := map[string]struct {
		faults            []fault
		mounted, uploaded int
	}{
		"registry mounts":          {mounted: 1, uploaded: 2},
		"registry refuses a mount": {faults: []fault{refuseMounts}, mounted: 0, uploaded: 3},
	}
	for label, tc := range cases {
		t.Run(label, func(t *testing.T) {
			t.Parallel()
			host := newOlareg(t, tc.faults...)
			ctx := context.Background()
			client := newClient()
			base, l := buildImage(t, "base layer")
			baseRef, _ := name.ParseReference(host + "/base/img:1")
			if _, err := client.Push(ctx, baseRef, base, l, nil); err != nil {
				t.Fatal(err)
			}
			app := appOnBase(t, l, base, baseRef.String())
			rec := &recorder{}
			appRef, _ := name.ParseReference(host + "/team/app:1")
			res, err := client.Push(ctx, appRef, app, l, rec.observe)
			if err != nil {
				t.Fatal(err)
			}
			if res.Mounted != tc.mounted || res.Uploaded != tc.uploaded {
				t.Fatalf("mounted %d, uploaded %d; want %d and %d", res.Mounted, res.Uploaded, tc.mounted, tc.uploaded)
			}
			if d := rec.final()[events.StageMount].Detail; !strings.Contains(d, "mounted") {
				t.Errorf("mount stage says %q", d)
			}
			// Either way the image is whole in its own repository.
			repo, _ := client.Open(ctx, appRef.Context(), false)
			for _, b := range app.Blobs() {
				if ok, err := repo.HeadBlob(ctx, b.Digest); err != nil || !ok {
					t.Errorf("blob %s missing from team/app: %v", b.Digest, err)
				}
			}
		})
	}
}

// TestAMountAnsweredWithASessionUploadsIntoIt: a registry that answers a
// mount with 202 and an upload session gets the blob in that session, not
// in a second one.
func TestAMountAnsweredWithASessionUploadsIntoIt(t *testing.T) {
	t.Parallel()
	var sessions atomic.Int32
	countSessions := func(r *http.Request) (int, http.Header, bool) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/") {
			sessions.Add(1)
		}
		return 0, nil, false
	}
	host := registrytest.Proxy(t, newOlareg(t, countSessions), registrytest.MountOpensSession)
	ctx := context.Background()
	client := newClient()
	base, l := buildImage(t, "base layer")
	baseRef := mustRef(t, host+"/base/img:1")
	if _, err := client.Push(ctx, baseRef, base, l, nil); err != nil {
		t.Fatal(err)
	}
	app := appOnBase(t, l, base, baseRef.String())
	before := sessions.Load()
	res, err := client.Push(ctx, mustRef(t, host+"/team/app:1"), app, l, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Mounted != 0 || res.Uploaded != 3 {
		t.Fatalf("mounted %d, uploaded %d; want 0 and 3", res.Mounted, res.Uploaded)
	}
	if n := sessions.Load() - before; n != 3 {
		t.Fatalf("%d upload sessions opened for 3 blobs, one of them by the mount: want 3", n)
	}
	repo, _ := client.Open(ctx, mustRef(t, host+"/team/app:1").Context(), false)
	for _, b := range app.Blobs() {
		if ok, err := repo.HeadBlob(ctx, b.Digest); err != nil || !ok {
			t.Errorf("blob %s missing from team/app: %v", b.Digest, err)
		}
	}
}
