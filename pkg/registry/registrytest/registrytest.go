// Package registrytest has registries for tests that behave as registries
// in the field do when they misbehave, the way net/http/httptest has
// servers.
package registrytest

import (
	"context"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"

	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/google/go-containerregistry/pkg/name"
)

// Silent starts a registry that accepts connections, reads what it is
// sent and never answers — the registry that hangs — and returns its
// host:port. It stops at the test's cleanup.
func Silent(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed at cleanup
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// Memory serves an in-memory registry (go-containerregistry's), with the
// referrers API or without, and returns its host:port. It stops at the
// test's cleanup.
func Memory(t testing.TB, referrersAPI bool) string {
	t.Helper()
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)), ggcrregistry.WithReferrersSupport(referrersAPI)))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// Image builds a small image of one file holding content into a new OCI
// layout.
func Image(t testing.TB, content string) (oci.Graph, *oci.Layout) {
	t.Helper()
	return ImageOf(t, []byte(content))
}

// ImageOf builds an image of one file holding data into a new OCI layout.
func ImageOf(t testing.TB, data []byte) (oci.Graph, *oci.Layout) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f.txt"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := oci.CreateLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p, _ := oci.ParsePlatform("")
	g, err := oci.BuildImage(context.Background(), dir, oci.ImageConfig{Cmd: []string{"/f.txt"}, Platform: p}, l)
	if err != nil {
		t.Fatal(err)
	}
	return g, l
}

// Push pushes a small image of content to ref with c and returns its graph.
func Push(t testing.TB, c *registry.Client, ref, content string) oci.Graph {
	t.Helper()
	g, l := Image(t, content)
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Push(context.Background(), r, g, l, nil); err != nil {
		t.Fatal(err)
	}
	return g
}
