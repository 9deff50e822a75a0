package registrytest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/tooltest"
)

// The distribution project's registries, as real binaries (see Distribution).
const (
	// DockerRegistry is Debian's docker-registry: distribution 2.8, no
	// referrers API, the registry most self-hosted ones still run.
	DockerRegistry = "docker-registry"
	// DistributionV3 is distribution v3.1.2 (`make tools` builds it from
	// scripts/registry, with its local storage drivers only): the
	// registry behind Docker Hub, GitLab's and many others; no referrers
	// API either.
	DistributionV3 = "distribution-registry"
)

// Distribution runs a distribution registry binary (DockerRegistry or
// DistributionV3, found with tooltest.Find) on a free loopback port, with
// its storage in a temporary directory and deletes enabled, and returns its
// host:port once it answers. It stops at the test's cleanup.
func Distribution(t testing.TB, bin string) string {
	t.Helper()
	addr, _ := DistributionWithGC(t, bin)
	return addr
}

// DistributionWithGC is Distribution, and a func that runs the registry's
// own garbage collection (`registry garbage-collect`) over its storage:
// it removes the blobs no manifest refers to any more.
func DistributionWithGC(t testing.TB, bin string) (addr string, collect func() ([]byte, error)) {
	t.Helper()
	return distribution(t, bin, "")
}

// DistributionNotifying is Distribution, configured to send its
// notifications of pushes (not pulls) to url, with token as the bearer
// token: its notifications.endpoints, as an operator configures them.
func DistributionNotifying(t testing.TB, bin, url, token string) string {
	t.Helper()
	addr, _ := distribution(t, bin, fmt.Sprintf(`notifications:
  endpoints:
    - name: digestline
      url: %s
      headers: {Authorization: [Bearer %s]}
      timeout: 5s
      threshold: 3
      backoff: 1s
      ignore: {actions: [pull]}
`, url, token))
	return addr
}

// distribution runs bin with the config and extra lines of it.
func distribution(t testing.TB, bin, extra string) (addr string, collect func() ([]byte, error)) {
	t.Helper()
	path := tooltest.Find(t, bin)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = ln.Addr().String()
	_ = ln.Close()
	dir := t.TempDir()
	config := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: %s}, delete: {enabled: true}}
http: {addr: %s}
%s`, filepath.Join(dir, "data"), addr, extra)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, path, "serve", config)
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr, func() ([]byte, error) { return exec.Command(path, "garbage-collect", config).CombinedOutput() }
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not start on %s", bin, addr)
		}
	}
}
