package builder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/service"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
)

// Failure classes of a build.
const (
	ClassInput    = "input"     // the request or its source is unusable as given
	ClassNotFound = "not-found" // the source does not exist
)

// Config configures the builder.
type Config struct {
	service.Deps
	// Created is the images' creation time and file mtime (SOURCE_DATE_EPOCH); zero is the epoch.
	Created time.Time
	// WorkDir is where object sources are unpacked (default: the system temp dir).
	WorkDir string
}

// Run consumes build.requested until ctx is cancelled.
func Run(ctx context.Context, cfg Config) error {
	bus := cfg.Bus("builder")
	blobs, err := events.OpenBlobStore(ctx, cfg.JetStream)
	if err != nil {
		return err
	}
	b := &builder{cfg: cfg, bus: bus, blobs: blobs}
	return bus.Consume(ctx, events.ConsumerSpec{Durable: "builder", Events: []events.Name{events.BuildRequested}, AckWait: time.Minute}, b.handle)
}

type builder struct {
	cfg   Config
	bus   *events.Bus
	blobs *events.BlobStore
}

// buildError is a failure the requester must fix; it ends the run.
type buildError struct {
	class, hint string
	err         error
}

func (e *buildError) Error() string { return e.err.Error() }

func (b *builder) handle(ctx context.Context, m events.Message) error {
	req, err := events.Decode[events.BuildRequest](m.Event)
	if err != nil {
		return err
	}
	graph, err := b.build(ctx, req)
	var berr *buildError
	if errors.As(err, &berr) {
		b.cfg.Log().Warn("[BUILD] failed", "run_id", events.RunID(m.Event), "class", berr.class, "error", berr.err)
		_, err = b.bus.Emit(ctx, m.Event, events.BuildFailed, "", events.Failure{
			Target: req.Target, Stage: "build", Class: berr.class, Message: berr.err.Error(), Hint: berr.hint,
			Evidence: events.Evidence{Request: m.Event.ID()},
		})
		return err
	}
	if err != nil {
		return err // infrastructure: retried
	}
	b.cfg.Log().Info(fmt.Sprintf("[BUILD] %s: %d descriptors", graph.Root.Digest, len(graph.Descriptors)),
		"run_id", events.RunID(m.Event), "digest", graph.Root.Digest.String())
	_, err = b.bus.Emit(ctx, m.Event, events.BuildCompleted, "", events.BuildResult{
		Target: req.Target, Graph: graph, BlobStore: events.BlobBucket, PromoteTo: req.PromoteTo,
		Evidence: events.Evidence{Request: m.Event.ID()},
	})
	return err
}

func (b *builder) build(ctx context.Context, req events.BuildRequest) (oci.Graph, error) {
	if _, err := name.ParseReference(req.Target); err != nil {
		return oci.Graph{}, &buildError{ClassInput, "the target must be an image reference such as registry.example.com/team/app:tag", err}
	}
	dir, cleanup, err := b.source(ctx, req.Source)
	if err != nil {
		return oci.Graph{}, err
	}
	defer cleanup()
	spec, err := ResolveSpec(dir, req.Spec)
	if err != nil {
		return oci.Graph{}, &buildError{ClassInput, "fix " + SpecFile + " or " + IgnoreFile + " in the source", err}
	}
	config, err := spec.ImageConfig(b.cfg.Created)
	if err != nil {
		return oci.Graph{}, &buildError{ClassInput, "fix the build spec (platform os/arch, compression gzip|zstd|none, mediaTypes oci|docker)", err}
	}
	graph, err := Build(ctx, dir, spec, config, req.Target, b.blobs)
	if err != nil && ctx.Err() == nil && !errors.Is(err, oci.ErrStore) {
		return oci.Graph{}, &buildError{ClassInput, "check the source tree (only files, directories and symlinks go into a layer) and the spec's ignore and layer patterns", err}
	}
	return graph, err
}

// Build builds the image of dir and what the spec attaches to it (an SBOM),
// putting every blob into store. name labels the SBOM.
func Build(ctx context.Context, dir string, spec events.BuildSpec, config oci.ImageConfig, name string, store oci.BlobStore) (oci.Graph, error) {
	graph, err := oci.BuildImage(ctx, dir, config, store)
	if err != nil || !spec.SBOM {
		return graph, err
	}
	sbom, err := oci.BuildSBOM(ctx, graph, name, config.Created, store)
	if err != nil {
		return oci.Graph{}, fmt.Errorf("sbom: %w", err)
	}
	graph.Referrers = append(graph.Referrers, sbom)
	return graph, nil
}

// source returns a directory holding the build input.
func (b *builder) source(ctx context.Context, src events.Source) (string, func(), error) {
	switch src.Kind {
	case events.SourceDir:
		if st, err := os.Stat(src.Path); err != nil || !st.IsDir() {
			return "", nil, &buildError{ClassNotFound, "source.path must be a directory the builder can read", fmt.Errorf("source directory %q: not found or not a directory", src.Path)}
		}
		return src.Path, func() {}, nil
	case events.SourceObject:
		d, err := digest.Parse(src.Object)
		if err != nil {
			return "", nil, &buildError{ClassInput, "source.object must be the digest of a tarball in the blob store", err}
		}
		rc, err := b.blobs.Open(ctx, d)
		if errors.Is(err, oci.ErrBlobNotFound) {
			return "", nil, &buildError{ClassNotFound, "upload the source tarball to the blob store before requesting the build ('digestline ship' does)", err}
		}
		if err != nil {
			return "", nil, err
		}
		defer rc.Close()
		dir, err := os.MkdirTemp(b.cfg.WorkDir, "digestline-src-*")
		if err != nil {
			return "", nil, err
		}
		cleanup := func() { _ = os.RemoveAll(dir) }
		// The blob store checked the tarball against its digest when it was put.
		if err := oci.ExtractTar(rc, dir, oci.DefaultExtractLimits); err != nil {
			cleanup()
			return "", nil, &buildError{ClassInput, "the source tarball is unsafe or corrupt: rebuild it from a clean tree", err}
		}
		return dir, cleanup, nil
	}
	return "", nil, &buildError{ClassInput, "source.kind must be dir or object", fmt.Errorf("unknown source kind %q", src.Kind)}
}
