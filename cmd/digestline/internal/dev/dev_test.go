package dev

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func TestRoute(t *testing.T) {
	for path, want := range map[string]struct {
		repo       string
		blob, ping bool
	}{
		"/v2/":                                 {ping: true},
		"/v2":                                  {ping: true},
		"/v2/_catalog":                         {},
		"/healthz":                             {},
		"/v2/app/manifests/1":                  {repo: "app"},
		"/v2/team/app/blobs/sha256:ab":         {repo: "team/app", blob: true},
		"/v2/team/app/blobs/uploads/":          {repo: "team/app"},
		"/v2/team/app/blobs/uploads/3f2a":      {repo: "team/app"},
		"/v2/team/app/referrers/sha256:ab":     {repo: "team/app"},
		"/v2/team/app/tags/list":               {repo: "team/app"},
		"/v2/x/manifests/y/tags/list":          {repo: "x/manifests/y"},
		"/v2/team/tags/app/manifests/sha256:a": {repo: "team/tags/app"},
		// olareg cleans the path: the guard must lock the repository it serves.
		"/v2/other/../team/app/manifests/1": {repo: "team/app"},
		"/v2/team//app/./blobs/sha256:ab":   {repo: "team/app", blob: true},
	} {
		repo, blob, ping := route(path)
		if repo != want.repo || blob != want.blob || ping != want.ping {
			t.Errorf("route(%q) = %q, %v, %v; want %q, %v, %v", path, repo, blob, ping, want.repo, want.blob, want.ping)
		}
	}
}

// TestRegistryServesRepositoriesConcurrently pushes and pulls images in
// several repositories at once, two pushers per repository, through the
// dev registry's guard: under -race this fails if olareg's per-repository
// state is touched by two requests at once.
func TestRegistryServesRepositoriesConcurrently(t *testing.T) {
	srv, err := Registry(t.TempDir(), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler)
	defer ts.Close()
	host := strings.TrimPrefix(ts.URL, "http://")

	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			img, err := random.Image(256, 2)
			if err != nil {
				errs <- err
				return
			}
			ref, err := name.NewTag(fmt.Sprintf("%s/team/app%d:%d", host, i/2, i%2), name.Insecure)
			if err != nil {
				errs <- err
				return
			}
			if err := remote.Write(ref, img); err != nil {
				errs <- fmt.Errorf("push %s: %w", ref, err)
				return
			}
			got, err := remote.Image(ref)
			if err != nil {
				errs <- fmt.Errorf("pull %s: %w", ref, err)
				return
			}
			if err := validate.Image(got); err != nil {
				errs <- fmt.Errorf("pull %s: %w", ref, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestStartNATSSaysItsPortIsTaken: digestline dev on a port something else
// holds fails with the bind's error and what to do, not after the
// server's start timeout with a guess.
func TestStartNATSSaysItsPortIsTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	ns, err := startNATS(Config{DataDir: t.TempDir(), NATSPort: port})
	if err == nil {
		ns.Shutdown()
		t.Fatalf("embedded NATS started on port %d, which a listener holds", port)
	}
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "--nats-port") {
		t.Errorf("error: %v; want the port in use and --nats-port", err)
	}
}

// TestStartNATSPicksAFreePort: --nats-port -1 (as the tests run dev)
// starts the server on a port it picks.
func TestStartNATSPicksAFreePort(t *testing.T) {
	ns, err := startNATS(Config{DataDir: t.TempDir(), NATSPort: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	if addr, ok := ns.Addr().(*net.TCPAddr); !ok || addr.Port <= 0 {
		t.Errorf("NATS listens on %v", ns.Addr())
	}
}
