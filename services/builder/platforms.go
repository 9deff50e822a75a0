package builder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// multiPlatform reports whether the spec builds an index.
func multiPlatform(spec events.BuildSpec) bool {
	return len(spec.Platforms) > 0 || len(spec.PlatformSources) > 0
}

// buildIndex builds one image per platform — from the platform's own source
// directory, or from a Go main package cross-compiled for it — and an index
// of them.
func buildIndex(ctx context.Context, dir string, spec events.BuildSpec, base oci.ImageConfig, opts Options, store oci.BlobStore) (oci.Graph, error) {
	platforms := spec.Platforms
	if len(platforms) == 0 {
		for p := range spec.PlatformSources {
			platforms = append(platforms, p)
		}
	}
	platforms = uniq(platforms)
	slices.Sort(platforms) // the index lists platforms in a stable order
	var images []oci.Graph
	for _, ps := range platforms {
		p, err := oci.ParsePlatform(ps)
		if err != nil {
			return oci.Graph{}, failure.New(failure.Input, err, "list platforms as os/arch[/variant]")
		}
		tree, cleanup, err := platformTree(ctx, dir, ps, p, spec)
		if err != nil {
			return oci.Graph{}, err
		}
		cfg := base
		cfg.Platform = p
		if cfg.Base, err = ResolveBase(ctx, spec.Base, p, opts.Registry, store); err != nil {
			cleanup()
			return oci.Graph{}, baseError(err)
		}
		img, err := oci.BuildImage(ctx, tree, cfg, store)
		cleanup()
		if err != nil {
			return oci.Graph{}, imageError(ctx, err)
		}
		images = append(images, img)
	}
	return oci.BuildIndex(ctx, images, base.Format, nil, store)
}

// platformTree returns the directory whose files make the platform's image.
func platformTree(ctx context.Context, dir, name string, p v1.Platform, spec events.BuildSpec) (string, func(), error) {
	noop := func() {}
	if spec.Go != nil {
		return goBuild(ctx, dir, p, *spec.Go)
	}
	sub, ok := spec.PlatformSources[name]
	if !ok {
		if len(spec.PlatformSources) > 0 {
			return "", noop, failure.New(failure.Input, fmt.Errorf("no platformSources entry for %s", name), "give every platform a directory in platformSources")
		}
		return dir, noop, nil // the same files on every platform (scripts, data)
	}
	clean := path.Clean("/" + filepath.ToSlash(sub))
	tree := filepath.Join(dir, filepath.FromSlash(clean))
	if st, err := os.Stat(tree); err != nil || !st.IsDir() {
		return "", noop, failure.New(failure.NotFound, fmt.Errorf("platform %s: %s is not a directory in the source", name, sub), "platformSources entries are directories inside the source")
	}
	return tree, noop, nil
}

// goBuild cross-compiles a Go main package for p, ko-style: a static binary
// (CGO_ENABLED=0), built with -trimpath and without VCS stamping so the same
// source gives the same bytes anywhere, alone in a fresh tree.
func goBuild(ctx context.Context, dir string, p v1.Platform, g events.GoBuild) (string, func(), error) {
	noop := func() {}
	if _, err := exec.LookPath("go"); err != nil {
		return "", noop, failure.New(failure.Input, errors.New("go: command not found"), "install the Go toolchain where the builder runs, or build the binaries first and use platformSources")
	}
	tree, err := os.MkdirTemp("", "digestline-go-*")
	if err != nil {
		return "", noop, err
	}
	cleanup := func() { _ = os.RemoveAll(tree) }
	binary := goBinaryPath(g)
	out := filepath.Join(tree, filepath.FromSlash(strings.TrimPrefix(binary, "/")))
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags", g.Ldflags, "-o", out}
	if len(g.Tags) > 0 {
		args = append(args, "-tags", strings.Join(g.Tags, ","))
	}
	cmd := exec.CommandContext(ctx, "go", append(args, g.Main)...)
	cmd.Dir = dir
	// The source is built as its own module (no enclosing go.work) and
	// without the caller's GOFLAGS, which could change the bytes.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture, "GOWORK=off", "GOFLAGS=")
	if v := strings.TrimPrefix(p.Variant, "v"); p.Architecture == "arm" && v != "" {
		cmd.Env = append(cmd.Env, "GOARM="+v)
	}
	if msg, err := cmd.CombinedOutput(); err != nil {
		cleanup()
		if ctx.Err() != nil {
			return "", noop, ctx.Err()
		}
		return "", noop, failure.New(failure.Input, fmt.Errorf("go build %s for %s/%s: %v\n%s", g.Main, p.OS, p.Architecture, err, msg), "fix the Go build (go.main names a main package relative to the source)")
	}
	return tree, cleanup, nil
}

// goBinaryPath is where the binary goes in the image: go.binary, or
// /<last element of the main package>.
func goBinaryPath(g events.GoBuild) string {
	if g.Binary != "" {
		return path.Clean("/" + g.Binary)
	}
	return "/" + path.Base(path.Clean("/"+strings.TrimSuffix(g.Main, "/...")))
}

func imageError(ctx context.Context, err error) error {
	if ctx.Err() != nil || errors.Is(err, oci.ErrStore) {
		return err
	}
	return failure.New(failure.Input, err, "check the source tree (only files, directories and symlinks go into a layer) and the spec's ignore and layer patterns")
}
