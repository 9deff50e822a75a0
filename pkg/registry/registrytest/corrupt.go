package registrytest

import (
	"bytes"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

// CorruptingProxy serves the registry at target through a proxy that,
// while on is set, flips the last byte of every blob it serves: a registry
// whose storage went bad, or one that substitutes content. It returns the
// proxy's host:port; it stops at the test's cleanup.
func CorruptingProxy(t testing.TB, target string) (host string, on *atomic.Bool) {
	t.Helper()
	on = &atomic.Bool{}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	rp.ErrorLog = log.New(io.Discard, "", 0) // a client that gave up on a request is no news
	rp.ModifyResponse = func(resp *http.Response) error {
		if !on.Load() || resp.Request.Method != http.MethodGet || !strings.Contains(resp.Request.URL.Path, "/blobs/sha256:") {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return err
		}
		if len(body) > 0 {
			body[len(body)-1] ^= 0xff
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), on
}
