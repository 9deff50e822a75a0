package registry_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/digestline/digestline/pkg/events"
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
		late      bool // refused at the tag update, after the upload
		wantFound digest.Digest
	}{
		"no expectation moves the tag":      {preset: true},
		"expected previous digest moves it": {preset: true, opts: []registry.PushOption{registry.ExpectTag(old.Root.Digest)}},
		"unexpected previous digest fails": {preset: true, conflict: true, wantFound: old.Root.Digest,
			opts: []registry.PushOption{registry.ExpectTag(bogus)}},
		"force moves it":                {preset: true, opts: []registry.PushOption{registry.WithTagPolicy(registry.TagForce), registry.ExpectTag(bogus)}},
		"if-absent sets a new tag":      {opts: []registry.PushOption{registry.WithTagPolicy(registry.TagIfAbsent)}},
		"if-absent refuses an existing": {preset: true, conflict: true, wantFound: old.Root.Digest, opts: []registry.PushOption{registry.WithTagPolicy(registry.TagIfAbsent)}},
		// In the pipeline's order (MoveTagVia), drift is checked at the
		// tag's turn, after the upload: against where the runs left it.
		"in order, from where a run left it":   {preset: true, opts: inOrder([]string{old.Root.Digest.String()}, registry.SeenAt(bogus))},
		"in order, moved from outside":         {preset: true, conflict: true, late: true, wantFound: old.Root.Digest, opts: inOrder([]string{bogus.String()})},
		"in order, the caller's expect holds":  {preset: true, conflict: true, late: true, wantFound: old.Root.Digest, opts: inOrder([]string{old.Root.Digest.String()}, registry.ExpectTag(bogus))},
		"in order, from where it was seen":     {preset: true, opts: inOrder(nil, registry.SeenAt(old.Root.Digest))},
		"in order, seen elsewhere":             {preset: true, conflict: true, late: true, wantFound: old.Root.Digest, opts: inOrder(nil, registry.SeenAt(bogus))},
		"in order, seen absent, found created": {preset: true, conflict: true, late: true, wantFound: old.Root.Digest, opts: inOrder(nil, registry.SeenAt(""))},
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
			if res.Uploaded != 0 && !tc.late {
				t.Errorf("a refused push uploaded %d blobs: drift is checked before any upload", res.Uploaded)
			}
		})
	}
	if _, err := registry.ParseTagPolicy("sometimes"); err == nil {
		t.Error("an unknown policy was accepted")
	}
}

// inOrder is the push options of a move in the pipeline's order, where
// the pipeline's runs left the tag at known (nil: they never moved it).
func inOrder(known []string, opts ...registry.PushOption) []registry.PushOption {
	return append(opts, registry.MoveTagVia(func(ctx context.Context, _ string, move func(context.Context, []string) (string, error)) (string, error) {
		return move(ctx, known)
	}))
}

type overtaken struct{}

func (overtaken) Error() string     { return "a newer run moved the tag" }
func (overtaken) Overtaken() string { return "superseded by a newer run" }

// A push overtaken at its tag's turn pushes everything but the tag, and
// ends with the mover's answer.
func TestAnOvertakenPushLeavesTheTag(t *testing.T) {
	t.Parallel()
	old, l := buildImage(t, "the newer run's release")
	next, l2 := buildImage(t, "an older request's release")
	host := newRegistry(t)
	ref, _ := name.ParseReference(host + "/team/app:dev")
	ctx := context.Background()
	client := newClient()
	if _, err := client.Push(ctx, ref, old, l, nil); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	_, err := client.Push(ctx, ref, next, l2, rec.observe, registry.MoveTagVia(func(context.Context, string, func(context.Context, []string) (string, error)) (string, error) {
		return "", overtaken{}
	}))
	if !errors.As(err, new(overtaken)) {
		t.Fatalf("push = %v, want the mover's answer", err)
	}
	repo, _ := client.Open(ctx, ref.Context(), false)
	if now, _, _ := repo.HeadManifest(ctx, "dev"); now.Digest != old.Root.Digest {
		t.Errorf("dev points at %s, want the newer run's %s left in place", now.Digest, old.Root.Digest)
	}
	if _, found, _ := repo.HeadManifest(ctx, next.Root.Digest.String()); !found {
		t.Error("the overtaken push's manifest is not in the registry by digest")
	}
	if r := rec.final()[events.StageTagUpdate]; r.Status != events.StatusSkipped || !strings.Contains(r.Detail, "superseded") {
		t.Errorf("tag update %+v, want skipped as superseded", r)
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
