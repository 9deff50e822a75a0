package e2etest

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/digestline/digestline/cmd/digestline/internal/dev"
	"github.com/digestline/digestline/pkg/tooltest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// PeerTool finds a peer tool (see tooltest.Find).
func PeerTool(t *testing.T, bin string) string { t.Helper(); return tooltest.Find(t, bin) }

func RunTool(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(PeerTool(t, bin), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// RequireContainers skips a container test when no engine is set up — the
// podman binary and the exports of ../shared/tools/container-engine
// (DOCKER_HOST, CONTAINERS_CONF) — unless DIGESTLINE_REQUIRE_CONTAINERS=1
// (CI), where that is a failure.
func RequireContainers(t *testing.T) string {
	t.Helper()
	podman, err := exec.LookPath("podman")
	if err == nil && os.Getenv("DOCKER_HOST") != "" {
		return podman
	}
	if os.Getenv("DIGESTLINE_REQUIRE_CONTAINERS") == "1" {
		t.Fatal("no container engine: run ../shared/tools/container-engine (DIGESTLINE_REQUIRE_CONTAINERS=1 makes this a failure)")
	}
	t.Skip(`no container engine set up: run eval "$(../shared/tools/container-engine)" to run the container tests`)
	return ""
}

// Cosign runs the real cosign CLI offline: no transparency log (there is
// none here), its HOME the test's, plain HTTP to the test's registries.
// Verifying takes the OCI 1.1 referrers (--experimental-oci11) and a
// trusted root that trusts nothing but the key (emptyTrustedRoot): cosign
// reads any sigstore bundle among the referrers (our provenance is one) and
// then wants a root, which it would otherwise fetch from the network.
func Cosign(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(PeerTool(t, "cosign"), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "COSIGN_PASSWORD=test-password", "COSIGN_EXPERIMENTAL=1",
		"SIGSTORE_NO_CACHE=1", "TUF_ROOT="+filepath.Join(dir, "tuf"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// EmptyTrustedRoot writes a sigstore trusted root that trusts no
// certificate authority, log or timestamp authority: cosign's bundle
// verifier needs one, and with --key the key is all there is to trust.
func EmptyTrustedRoot(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "trusted_root.json")
	if err := os.WriteFile(p, []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// EmbeddedRegistry serves the registry of digestline dev on a free port.
func EmbeddedRegistry(t *testing.T) string {
	t.Helper()
	return EmbeddedRegistryWrapped(t, nil)
}

// EmbeddedRegistryWrapped is embeddedRegistry with its handler wrapped.
func EmbeddedRegistryWrapped(t *testing.T, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	srv, err := dev.Registry(t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)), wrap)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// ArtifactTypes is a tree printed by `digestline discover --json` as
// sorted lines of depth, artifact type and digest: what two registries must
// answer alike.
func ArtifactTypes(t *testing.T, discovered string) []string {
	t.Helper()
	type node struct {
		ArtifactType string `json:"artifactType"`
		Digest       string `json:"digest"`
		Children     []node `json:"children"`
	}
	var tree node
	if err := json.Unmarshal([]byte(discovered), &tree); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(n node, depth int)
	walk = func(n node, depth int) {
		for _, c := range n.Children {
			out = append(out, strings.Repeat(" ", depth)+c.ArtifactType+" "+c.Digest)
			walk(c, depth+1)
		}
	}
	walk(tree, 0)
	slices.Sort(out)
	return out
}

// TagExists asks the registry at host whether repo:tag exists.
func TagExists(t *testing.T, host, repo, tag string) bool {
	t.Helper()
	req, err := http.NewRequest(http.MethodHead, "http://"+host+"/v2/"+repo+"/manifests/"+tag, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", v1.MediaTypeImageManifest+", "+v1.MediaTypeImageIndex)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
