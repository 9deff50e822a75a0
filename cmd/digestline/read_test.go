package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/cmd/digestline/internal/ship"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/services/reporter"
)

// cli and promoteCLI run the CLI in the test's process (cliErr).
var (
	cli        = e2etest.CLI(cliErr).Must
	promoteCLI = e2etest.CLI(cliErr).Promote
)

// cliErr runs a digestline command and returns what it printed and how it
// ended.
func cliErr(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

// cliResult is what a command run in the background printed and returned.
type cliResult struct {
	out string
	err error
}

// cliLater runs a command in the background (one that waits, as run
// follow does) and gives what it printed and returned once it is done.
func cliLater(t *testing.T, args ...string) <-chan cliResult {
	done := make(chan cliResult, 1)
	go func() { // the test receives from done
		out, err := cliErr(t, args...)
		done <- cliResult{out, err}
	}()
	return done
}

func TestInspectDiscoverAndTags(t *testing.T) {
	s, _ := e2etest.StartStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := ship.Ship(ctx, s.Bus, ship.Request{Dir: e2etest.SourceDir(t, "read"), Target: s.RegistryAddr + "/team/read:1",
		Spec: events.BuildSpec{Entrypoint: []string{"/bin/app"}, SBOM: true}}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	repo := s.RegistryAddr + "/team/read"
	image := repo + "@" + res.Promotion.Digest
	sig := filepath.Join(t.TempDir(), "sig.json")
	if err := os.WriteFile(sig, []byte(`{"sig":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cli(t, "attach", image, sig, "--artifact-type", "application/vnd.example.signature.v1+json")

	// Sign the SBOM too: find it, then attach to it.
	var tree node
	if err := json.Unmarshal([]byte(cli(t, "discover", image, "--json")), &tree); err != nil {
		t.Fatal(err)
	}
	// The image's referrers: its SBOMs (SPDX, CycloneDX), its signature and its promotion to dev.
	i := slices.IndexFunc(tree.Children, func(n node) bool { return n.ArtifactType == "application/spdx+json" })
	attested := slices.ContainsFunc(tree.Children, func(n node) bool { return n.ArtifactType == reporter.ArtifactTypePromotion })
	if i < 0 || !attested || len(tree.Children) != 4 {
		t.Fatalf("discover found %+v", tree.Children)
	}
	sbom := tree.Children[i].Digest
	cli(t, "attach", repo+"@"+sbom.String(), sig, "--artifact-type", "application/vnd.example.sbom-signature.v1+json")

	if err := json.Unmarshal([]byte(cli(t, "discover", image, "--json")), &tree); err != nil {
		t.Fatal(err)
	}
	for _, c := range tree.Children {
		want := 0
		if c.Digest == sbom {
			want = 1
		}
		if len(c.Children) != want || (want == 1 && c.Children[0].ArtifactType != "application/vnd.example.sbom-signature.v1+json") {
			t.Errorf("%s has referrers %+v", c.ArtifactType, c.Children)
		}
	}
	text := cli(t, "discover", repo+":1")
	if !strings.Contains(text, "    └── referrer") && !strings.Contains(text, "│   └── referrer") {
		t.Errorf("the SBOM's signature is not drawn under the SBOM:\n%s", text)
	}

	out := cli(t, "inspect", repo+":1")
	for _, want := range []string{res.Promotion.Digest, "├── config", "└── layer 1", "application/vnd.oci.image.layer.v1.tar+gzip"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect lacks %q:\n%s", want, out)
		}
	}

	// Tags, one per page.
	layout := filepath.Join(t.TempDir(), "l")
	cli(t, "build", e2etest.SourceDir(t, "tags"), "-o", layout)
	for _, tag := range []string{"a", "b", "c"} {
		cli(t, "push", layout, repo+":"+tag)
	}
	var tags []string
	if err := json.Unmarshal([]byte(cli(t, "tags", repo, "--page-size", "1", "--json")), &tags); err != nil {
		t.Fatal(err)
	}
	slices.Sort(tags)
	if !slices.Equal(tags, []string{"1", "a", "b", "c", "dev"}) {
		t.Fatalf("tags %v", tags)
	}
}

func TestVerifiedPullIntoALayout(t *testing.T) {
	s, _ := e2etest.StartStack(t, e2etest.WithRegistryWrapper(tamper))
	layout := filepath.Join(t.TempDir(), "src")
	out := cli(t, "build", e2etest.SourceDir(t, "pull me"), "-o", layout)
	digest := strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	for _, repo := range []string{"team/pull", "corrupt/pull"} {
		cli(t, "push", layout, s.RegistryAddr+"/"+repo+":1")
	}

	dst := filepath.Join(t.TempDir(), "pulled")
	cli(t, "pull", s.RegistryAddr+"/team/pull@"+digest, "-o", dst)
	// What was pulled pushes back to the same digest.
	again := cli(t, "push", dst, s.RegistryAddr+"/team/again:1")
	if !strings.Contains(again, digest) {
		t.Fatalf("the pulled layout pushed as:\n%s", again)
	}

	// Unpacked into a root filesystem: the tree that was built.
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if out := cli(t, "pull", s.RegistryAddr+"/team/pull@"+digest, "--unpack", rootfs); !strings.Contains(out, "unpacked") {
		t.Fatalf("pull --unpack printed %q", out)
	}
	if app, err := os.ReadFile(filepath.Join(rootfs, "bin", "app")); err != nil || !strings.Contains(string(app), "pull me") {
		t.Fatalf("bin/app in the unpacked tree: %q, %v", app, err)
	}

	// A registry serving corrupted blobs: the pull fails, naming the blob.
	cmd := newRootCommand()
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	cmd.SetArgs([]string{"pull", s.RegistryAddr + "/corrupt/pull@" + digest, "-o", filepath.Join(t.TempDir(), "bad")})
	if err := cmd.ExecuteContext(context.Background()); err == nil || !strings.Contains(err.Error(), "does not match its descriptor") {
		t.Fatalf("pull of a corrupted blob: %v", err)
	}
}
