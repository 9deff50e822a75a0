package registry_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// Two readers of one manifest through a Shared repository: the first gives
// up (its context is cancelled) while the registry holds its read; the
// second, waiting for that read, reads the manifest itself.
func TestASharedReadOutlivesTheReaderThatGaveUp(t *testing.T) {
	t.Parallel()
	g, l := buildImage(t, "read by two")
	var (
		gets atomic.Int32
		held = make(chan struct{})
	)
	host := newRegistry(t, func(r *http.Request) (int, http.Header, bool) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/") && gets.Add(1) == 1 {
			close(held)
			<-r.Context().Done() // held until its reader gives up
			return http.StatusServiceUnavailable, nil, true
		}
		return 0, nil, false
	})
	ref, _ := name.ParseReference(host + "/team/app:1")
	client := newClient()
	ctx := context.Background()
	if _, err := client.Push(ctx, ref, g, l, nil); err != nil {
		t.Fatal(err)
	}
	opened, err := client.Open(ctx, ref.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	repo := opened.Shared()

	first, giveUp := context.WithCancel(ctx)
	firstDone := make(chan error, 1)
	go func() {
		_, _, err := repo.GetManifest(first, g.Root.Digest.String())
		firstDone <- err
	}()
	<-held
	second := make(chan error, 1)
	go func() {
		body, _, err := repo.GetManifest(ctx, g.Root.Digest.String())
		if err == nil && len(body) == 0 {
			err = context.Canceled // no manifest read
		}
		second <- err
	}()
	time.Sleep(50 * time.Millisecond) // the second reader joins the first's read
	giveUp()
	if err := <-firstDone; err == nil {
		t.Fatal("the reader that gave up read the manifest")
	}
	if err := <-second; err != nil {
		t.Fatalf("the reader still waiting: %v, want the manifest, read again", err)
	}
	if n := gets.Load(); n != 2 {
		t.Errorf("the registry answered %d manifest reads, want 2 (the one given up, the one read again)", n)
	}
}
