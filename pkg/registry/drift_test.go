package registry_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
)

func TestTagDriftPolicies(t *testing.T) {
	t.Parallel()
	old, l := buildImage(t, "old release")
	next, l2 := buildImage(t, "new release")
	bogus := digest.FromString("someone else's image")
	cases := map[string]struct {
		opts      []registry.PushOption
		preset    bool // the tag points at old before the push
		conflict  bool
		wantFound digest.Digest
	}{
		"no expectation moves the tag":      {preset: true},
		"expected previous digest moves it": {preset: true, opts: []registry.PushOption{registry.ExpectTag(old.Root.Digest)}},
		"unexpected previous digest fails": {preset: true, conflict: true, wantFound: old.Root.Digest,
			opts: []registry.PushOption{registry.ExpectTag(bogus)}},
		"force moves it":                {preset: true, opts: []registry.PushOption{registry.WithTagPolicy(registry.TagForce), registry.ExpectTag(bogus)}},
		"if-absent sets a new tag":      {opts: []registry.PushOption{registry.WithTagPolicy(registry.TagIfAbsent)}},
		"if-absent refuses an existing": {preset: true, conflict: true, wantFound: old.Root.Digest, opts: []registry.PushOption{registry.WithTagPolicy(registry.TagIfAbsent)}},
	}
	for label, tc := range cases {
		t.Run(label, func(t *testing.T) {
			t.Parallel()
			host := newRegistry(t)
			ref, _ := name.ParseReference(host + "/team/app:prod")
			ctx := context.Background()
			client := newClient()
			if tc.preset {
				if _, err := client.Push(ctx, ref, old, l, nil); err != nil {
					t.Fatal(err)
				}
			}
			rec := &recorder{}
			res, err := client.Push(ctx, ref, next, l2, rec.observe, tc.opts...)
			repo, _ := client.Open(ctx, ref.Context(), false)
			now, _, _ := repo.HeadManifest(ctx, "prod")
			if !tc.conflict {
				if err != nil {
					t.Fatalf("push: %v", err)
				}
				if now.Digest != next.Root.Digest {
					t.Fatalf("tag points at %s, want the pushed %s", now.Digest, next.Root.Digest)
				}
				return
			}
			var rerr *failure.Error
			if !errors.As(err, &rerr) || !errors.Is(err, failure.Conflict) || rerr.Drift == nil {
				t.Fatalf("push = %v, want a conflict carrying the drift", err)
			}
			if rerr.Drift.Found != tc.wantFound || rerr.Drift.Tag != "prod" || !strings.Contains(rerr.Hint, "tag") {
				t.Errorf("drift %+v, hint %q", rerr.Drift, rerr.Hint)
			}
			if now.Digest != old.Root.Digest {
				t.Errorf("a refused push moved the tag to %s", now.Digest)
			}
			if res.Uploaded != 0 {
				t.Errorf("a refused push uploaded %d blobs: drift is checked before any upload", res.Uploaded)
			}
		})
	}
	if _, err := registry.ParseTagPolicy("sometimes"); err == nil {
		t.Error("an unknown policy was accepted")
	}
}

// A promotion's tag move that is tried again looks at the tag again: one
// moved by someone else meanwhile is not overwritten.
func TestATagMoveTriedAgainLooksAgain(t *testing.T) {
	t.Parallel()
	old, l := buildImage(t, "someone else's release")
	next, l2 := buildImage(t, "the promoted release")
	var (
		prod  name.Reference
		moved atomic.Bool
	)
	host := newRegistry(t, func(r *http.Request) (int, http.Header, bool) {
		if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/manifests/prod") && moved.CompareAndSwap(false, true) {
			// Someone moves the tag, and the registry fails this move.
			if _, err := newClient().Push(context.Background(), prod, old, l, nil); err != nil {
				t.Error(err)
			}
			return http.StatusServiceUnavailable, nil, true
		}
		return 0, nil, false
	})
	prod, _ = name.ParseReference(host + "/team/app:prod")
	ctx := context.Background()
	client := newClient()
	build, _ := name.ParseReference(host + "/team/app:build")
	if _, err := client.Push(ctx, build, next, l2, nil); err != nil {
		t.Fatal(err)
	}
	_, err := client.Push(ctx, prod, next, l2, nil, registry.WithTagPolicy(registry.TagIfAbsent), registry.ManifestsPresent())
	if !errors.Is(err, failure.Conflict) {
		t.Errorf("the move tried again over someone else's tag: %v, want a conflict", err)
	}
	repo, _ := client.Open(ctx, prod.Context(), false)
	if now, _, _ := repo.HeadManifest(ctx, "prod"); now.Digest != old.Root.Digest {
		t.Errorf("prod points at %s, want someone else's %s left in place", now.Digest, old.Root.Digest)
	}
}
