package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/services/builder"
	"github.com/digestline/digestline/services/reporter"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestPeerToolsReadOurLayouts has skopeo, crane and oras read layouts that
// digestline wrote and push them: the registry must end up with exactly the
// digests digestline computed, and digestline must verify them.
func TestPeerToolsReadOurLayouts(t *testing.T) {
	s, _ := e2etest.StartStack(t)
	ctx := context.Background()
	build := func(spec events.BuildSpec, src string) (oci.Graph, string) {
		dir := t.TempDir()
		l, err := oci.CreateLayout(dir)
		if err != nil {
			t.Fatal(err)
		}
		g, err := builder.Build(ctx, src, spec, builder.Options{Registry: registry.New()}, l)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.SetGraph(g, "lab"); err != nil {
			t.Fatal(err)
		}
		return g, dir
	}
	image, imageLayout := build(events.BuildSpec{Entrypoint: []string{"/bin/app"}}, e2etest.SourceDir(t, "interop"))
	withSBOM, sbomLayout := build(events.BuildSpec{Entrypoint: []string{"/bin/app"}, SBOM: true}, e2etest.SourceDir(t, "interop sbom"))
	multi := t.TempDir()
	for _, arch := range []string{"amd64", "arm64"} {
		if err := os.MkdirAll(filepath.Join(multi, arch), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(multi, arch, "app"), []byte(arch), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	index, indexLayout := build(events.BuildSpec{PlatformSources: map[string]string{"linux/amd64": "amd64", "linux/arm64": "arm64"}}, multi)

	pushedDigest := func(ref string) string {
		r, err := name.ParseReference(ref)
		if err != nil {
			t.Fatal(err)
		}
		d, err := remote.Head(r)
		if err != nil {
			t.Fatalf("%s is not in the registry: %v", ref, err)
		}
		return d.Digest.String()
	}
	cases := []struct {
		tool, repo string
		want       oci.Graph
		push       func(ref string)
	}{
		{"skopeo", "interop/skopeo", image, func(ref string) {
			e2etest.RunTool(t, "skopeo", "copy", "--dest-tls-verify=false", "oci:"+imageLayout+":lab", "docker://"+ref)
		}},
		{"skopeo --all (index)", "interop/skopeo-index", index, func(ref string) {
			e2etest.RunTool(t, "skopeo", "copy", "--all", "--dest-tls-verify=false", "oci:"+indexLayout+":lab", "docker://"+ref)
		}},
		{"crane", "interop/crane", image, func(ref string) {
			e2etest.RunTool(t, "crane", "push", imageLayout, ref, "--insecure")
		}},
		{"oras (with the SBOM referrer)", "interop/oras", withSBOM, func(ref string) {
			e2etest.RunTool(t, "oras", "copy", "--recursive", "--from-oci-layout", sbomLayout+":lab", ref, "--to-plain-http")
		}},
	}
	for _, tc := range cases {
		ref := s.RegistryAddr + "/" + tc.repo + ":lab"
		tc.push(ref)
		if got := pushedDigest(ref); got != tc.want.Root.Digest.String() {
			t.Errorf("%s pushed %s, digestline built %s", tc.tool, got, tc.want.Root.Digest)
			continue
		}
		cmd := newRootCommand()
		cmd.SetOut(new(strings.Builder))
		cmd.SetArgs([]string{"verify", s.RegistryAddr + "/" + tc.repo + "@" + tc.want.Root.Digest.String()})
		if err := cmd.ExecuteContext(ctx); err != nil {
			t.Errorf("%s: digestline verify: %v", tc.tool, err)
		}
	}

	// oras copied the SBOM along and finds it as a referrer.
	out := e2etest.RunTool(t, "oras", "discover", "--plain-http", "--format", "json", s.RegistryAddr+"/interop/oras@"+withSBOM.Root.Digest.String())
	if !strings.Contains(out, withSBOM.Referrers[0].Root.Digest.String()) || !strings.Contains(out, "application/spdx+json") {
		t.Errorf("oras discover does not list the SBOM:\n%s", out)
	}

	// A shipped image carries its promotion as an attestation oras can see.
	res, shipped, err := s.Ship(t, e2etest.SourceDir(t, "attested"), "interop/attested:1")
	if err != nil {
		t.Fatalf("ship: %v\n%s", err, shipped)
	}
	out = e2etest.RunTool(t, "oras", "discover", "--plain-http", "--format", "json", res.Promotion.Repository+"@"+res.Promotion.Digest)
	if !strings.Contains(out, reporter.ArtifactTypePromotion) {
		t.Errorf("oras discover does not list the promotion attestation:\n%s", out)
	}
}

// TestPodmanRunsTheBuiltImage loads a FROM-scratch image of a static Go
// binary from digestline's layout into podman and runs it.
func TestPodmanRunsTheBuiltImage(t *testing.T) {
	podman := e2etest.RequireContainers(t)
	_, file, _, _ := runtime.Caller(0)
	app := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(app, "hello"), "./hello")
	build.Dir = filepath.Join(filepath.Dir(file), "..", "..", "examples")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// podman names the pulled image after the layout's path, which must be lowercase.
	dir, err := os.MkdirTemp("", "digestline-podman-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	l, err := oci.CreateLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	g, err := builder.Build(context.Background(), app, events.BuildSpec{Entrypoint: []string{"/hello"}, SBOM: true}, builder.Options{Registry: registry.New()}, l)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetGraph(g, "podman-test"); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(podman, "pull", "-q", "oci:"+dir+":podman-test").CombinedOutput()
	if err != nil {
		t.Fatalf("podman pull: %v\n%s", err, out)
	}
	id := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command(podman, "rmi", "-f", id).Run() })
	out, err = exec.Command(podman, "run", "--rm", id).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "hello from an image shipped by digest") {
		t.Fatalf("podman run: %v\n%s", err, out)
	}
}
