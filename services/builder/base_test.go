package builder_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/services/builder"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

func newRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func client() *registry.Client { return registry.New(registry.WithKeychain(authn.NewMultiKeychain())) }

// buildInto builds dir with spec into a fresh layout.
func buildInto(t *testing.T, dir string, spec events.BuildSpec) (oci.Graph, string) {
	t.Helper()
	out := t.TempDir()
	l, err := oci.CreateLayout(out)
	if err != nil {
		t.Fatal(err)
	}
	g, err := builder.Build(context.Background(), dir, spec, builder.Options{Registry: client()}, l)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetGraph(g, ""); err != nil {
		t.Fatal(err)
	}
	return g, out
}

// pushBase builds a base image and pushes it to host/repo:1.
func pushBase(t *testing.T, host, repo string, spec events.BuildSpec) (oci.Graph, string) {
	t.Helper()
	dir := t.TempDir()
	write(t, dir, "base.txt", "from the base")
	g, out := buildInto(t, dir, spec)
	l, _ := oci.OpenLayout(out)
	ref, _ := name.ParseReference(host + "/" + repo + ":1")
	if _, err := client().Push(context.Background(), ref, g, l, nil); err != nil {
		t.Fatal(err)
	}
	return g, out
}

func validateLayout(t *testing.T, dir string, g oci.Graph) {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := ggcrv1.NewHash(g.Root.Digest.String())
	img, err := p.Image(h)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("validate.Image: %v", err)
	}
}

func TestBuildOnABaseImage(t *testing.T) {
	t.Parallel()
	host := newRegistry(t)
	baseSpec := events.BuildSpec{Env: []string{"PATH=/bin"}, Entrypoint: []string{"/base"}, Labels: map[string]string{"from": "base"}}
	ociBase, baseLayout := pushBase(t, host, "base/oci", baseSpec)
	dockerSpec := baseSpec
	dockerSpec.MediaTypes = "docker"
	dockerBase, _ := pushBase(t, host, "base/docker", dockerSpec)

	cases := map[string]struct {
		base       string
		baseDigest string
	}{
		"by tag":             {host + "/base/oci:1", ociBase.Root.Digest.String()},
		"by digest":          {host + "/base/oci@" + ociBase.Root.Digest.String(), ociBase.Root.Digest.String()},
		"docker v2.2 base":   {host + "/base/docker:1", dockerBase.Root.Digest.String()},
		"from an OCI layout": {builder.LayoutPrefix + baseLayout, ociBase.Root.Digest.String()},
	}
	for label, tc := range cases {
		t.Run(label, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			write(t, dir, "app.txt", "the app")
			g, out := buildInto(t, dir, events.BuildSpec{Base: tc.base, Env: []string{"MODE=prod"}, Cmd: []string{"serve"}})
			validateLayout(t, out, g)

			l, _ := oci.OpenLayout(out)
			var m v1.Manifest
			readJSONBlob(t, l, g.Root, &m)
			if len(m.Layers) != 2 || m.Layers[0].MediaType != v1.MediaTypeImageLayerGzip {
				t.Fatalf("layers %+v: want the base's (as OCI gzip) then ours", m.Layers)
			}
			if m.Annotations[v1.AnnotationBaseImageName] != tc.base || m.Annotations[v1.AnnotationBaseImageDigest] != tc.baseDigest {
				t.Errorf("base annotations %v", m.Annotations)
			}
			var cfg v1.Image
			readJSONBlob(t, l, m.Config, &cfg)
			if !slices.Equal(cfg.Config.Env, []string{"PATH=/bin", "MODE=prod"}) || !slices.Equal(cfg.Config.Entrypoint, []string{"/base"}) ||
				!slices.Equal(cfg.Config.Cmd, []string{"serve"}) || cfg.Config.Labels["from"] != "base" || len(cfg.RootFS.DiffIDs) != 2 {
				t.Errorf("config %+v: want the base's, with env added and cmd set", cfg)
			}
		})
	}
}

func TestMissingBaseFailsAsNotFound(t *testing.T) {
	t.Parallel()
	host := newRegistry(t)
	out := t.TempDir()
	l, _ := oci.CreateLayout(out)
	_, err := builder.Build(context.Background(), t.TempDir(), events.BuildSpec{Base: host + "/nope/missing:1"}, builder.Options{Registry: client()}, l)
	var berr *failure.Error
	if !errors.As(err, &berr) || berr.Class != failure.NotFound {
		t.Fatalf("Build = %v, want a not-found failure", err)
	}
}
