package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/tooltest"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/uuid"
)

// request publishes a build request and returns the run's last event.
func request(t *testing.T, s *e2etest.Stack, req events.BuildRequest) (events.Name, map[string]any) {
	t.Helper()
	run := uuid.NewString()
	if _, err := s.Bus.Start(context.Background(), events.BuildRequested, run, "test", req); err != nil {
		t.Fatal(err)
	}
	evs := s.RunEvents(t, run)
	last := evs[len(evs)-1]
	n, _ := events.NameOfType(last["type"].(string))
	return n, last
}

func TestBuildFromAGitRevision(t *testing.T) {
	tooltest.Find(t, "git")
	s, _ := e2etest.StartStack(t)
	repo := t.TempDir()
	e2etest.Git(t, repo, "init", "--quiet", "--initial-branch=main")
	if err := os.WriteFile(filepath.Join(repo, "version.txt"), []byte("v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "digestline.yaml"), []byte("entrypoint: [/version.txt]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e2etest.Git(t, repo, "add", ".")
	e2etest.Git(t, repo, "commit", "--quiet", "-m", "v1")
	v1commit := e2etest.Git(t, repo, "rev-parse", "HEAD")
	if err := os.WriteFile(filepath.Join(repo, "version.txt"), []byte("v2"), 0o644); err != nil {
		t.Fatal(err)
	}
	e2etest.Git(t, repo, "commit", "--quiet", "-am", "v2")

	url := "file://" + repo
	target := s.RegistryAddr + "/git/app:v1"
	n, ev := request(t, s, events.BuildRequest{Source: events.Source{Kind: events.SourceGit, URL: url, Rev: v1commit[:12]}, Target: target})
	if n != events.Promoted {
		t.Fatalf("run ended with %s: %v", n, ev["data"])
	}
	p := e2etest.DataOf[events.Promotion](t, ev)
	ref, _ := name.NewDigest(s.RegistryAddr + "/git/app@" + p.Digest)
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.Annotations["org.opencontainers.image.revision"] != v1commit || m.Annotations["org.opencontainers.image.source"] != url {
		t.Errorf("annotations %v: want the resolved commit and the URL", m.Annotations)
	}
	layers, _ := img.Layers()
	rc, _ := layers[0].Uncompressed()
	defer rc.Close()
	files := tarFiles(t, rc)
	if files["version.txt"] != "v1" {
		t.Errorf("image holds %v: want the v1 tree, not the branch head", files)
	}
	if _, ok := files["digestline.yaml"]; ok {
		t.Error("the build spec went into the image")
	}

	for label, src := range map[string]events.Source{
		"missing revision": {Kind: events.SourceGit, URL: url, Rev: "no-such-branch"},
		"ext transport":    {Kind: events.SourceGit, URL: "ext::sh -c touch% /tmp/pwned", Rev: "main"},
		"option as rev":    {Kind: events.SourceGit, URL: url, Rev: "--upload-pack=touch /tmp/pwned"},
	} {
		n, ev := request(t, s, events.BuildRequest{Source: src, Target: target})
		if n != events.BuildFailed {
			t.Errorf("%s: run ended with %s", label, n)
			continue
		}
		if f := e2etest.DataOf[events.Failure](t, ev); f.Hint == "" {
			t.Errorf("%s: failure without a hint: %+v", label, f)
		}
	}
	if _, err := os.Stat("/tmp/pwned"); err == nil {
		t.Fatal("a git source URL ran a command")
	}
}

func TestShipAnExistingLayout(t *testing.T) {
	s, _ := e2etest.StartStack(t)
	layoutDir := t.TempDir()
	l, err := oci.CreateLayout(layoutDir)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := oci.ParsePlatform("")
	g, err := oci.BuildImage(context.Background(), e2etest.SourceDir(t, "prebuilt"), oci.ImageConfig{Platform: p}, l)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetRoot(g.Root, ""); err != nil {
		t.Fatal(err)
	}
	n, ev := request(t, s, events.BuildRequest{Source: events.Source{Kind: events.SourceLayout, Path: layoutDir}, Target: s.RegistryAddr + "/prebuilt/app:1"})
	if n != events.Promoted || e2etest.DataOf[events.Promotion](t, ev).Digest != g.Root.Digest.String() {
		t.Fatalf("run ended with %s %v, want the layout's digest %s promoted", n, ev["data"], g.Root.Digest)
	}
	if code := s.GetJSON(t, "/v1/promotions", nil); code != http.StatusOK {
		t.Fatalf("GET /v1/promotions: %d", code)
	}
}
