package builder_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/services/builder"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestResolveSpecMergesFileRequestAndIgnoreFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, dir, builder.SpecFile, `
entrypoint: ["/app"]
cmd: ["serve"]
user: "65532"
ports: ["8080/tcp"]
platform: linux/arm64
compression: zstd
annotations:
  org.opencontainers.image.source: https://example.com/app.git
layers:
  - name: deps
    paths: ["vendor/**"]
ignore: ["*.log"]
`)
	write(t, dir, builder.IgnoreFile, "# scratch\n\n.git\ntmp/\n")
	spec, err := builder.ResolveSpec(dir, events.BuildSpec{Cmd: []string{"migrate"}, Ignore: []string{"*.bak"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(spec.Cmd, []string{"migrate"}) {
		t.Errorf("cmd %v: the request should win", spec.Cmd)
	}
	if !slices.Equal(spec.Entrypoint, []string{"/app"}) || spec.User != "65532" || spec.Platform != "linux/arm64" || spec.Compression != "zstd" {
		t.Errorf("file values lost: %+v", spec)
	}
	if len(spec.Layers) != 1 || spec.Layers[0].Name != "deps" {
		t.Errorf("layers %+v", spec.Layers)
	}
	for _, want := range []string{"/" + builder.SpecFile, "/" + builder.IgnoreFile, "*.log", "*.bak", ".git", "tmp/"} {
		if !slices.Contains(spec.Ignore, want) {
			t.Errorf("ignore %v lacks %q", spec.Ignore, want)
		}
	}
	if _, err := builder.ImageConfig(spec, zeroTime); err != nil {
		t.Fatalf("the merged spec does not build: %v", err)
	}
}

func TestResolveSpecRefusesTyposAndBadValues(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"unknown key":     "entrypiont: [/app]\n",
		"wrong type":      "ports: 8080\n",
		"not yaml":        "{{{\n",
		"bad compression": "compression: brotli\n",
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			write(t, dir, builder.SpecFile, content)
			spec, err := builder.ResolveSpec(dir, events.BuildSpec{})
			if err == nil {
				_, err = builder.ImageConfig(spec, zeroTime)
			}
			if err == nil {
				t.Fatalf("%q was accepted", content)
			}
			if name == "unknown key" && !strings.Contains(err.Error(), "entrypiont") {
				t.Errorf("error %q does not name the unknown key", err)
			}
		})
	}
}

func TestResolveSpecWithoutFiles(t *testing.T) {
	t.Parallel()
	spec, err := builder.ResolveSpec(t.TempDir(), events.BuildSpec{Entrypoint: []string{"/x"}})
	if err != nil || !slices.Equal(spec.Entrypoint, []string{"/x"}) {
		t.Fatalf("spec %+v, %v", spec, err)
	}
}

var zeroTime time.Time

func readJSONBlob(t *testing.T, l *oci.Layout, d v1.Descriptor, v any) {
	t.Helper()
	rc, err := l.Open(context.Background(), d.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := json.NewDecoder(rc).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func mkdirAll(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func buildErr(dir string, spec events.BuildSpec, l *oci.Layout) (oci.Graph, error) {
	return builder.Build(context.Background(), dir, spec, builder.Options{Registry: client()}, l)
}
