package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// Config configures the builder.
type Config struct {
	service.Deps
	// Created is the images' creation time and file mtime (SOURCE_DATE_EPOCH); zero is the epoch.
	Created time.Time
	// WorkDir is where sources are unpacked and checked out (default: the
	// system temp dir), in a directory of the builder's own, which it
	// removes as it stops (and a builder that starts removes those that
	// crashed builders left). The builder keeps up to 8 unpacked sources
	// there between builds, to unpack the next over (workdirs.go).
	WorkDir string
	// WebhookListener, when set, serves POST /webhooks/github, /gitlab and
	// /cloudevents, turning them into build.requested as Webhook says.
	WebhookListener net.Listener
	Webhook         WebhookConfig
	// Signer, when set, signs every image built (not layouts imported as
	// they are: those were built, and signed or not, elsewhere).
	Signer sign.Signer
}

// Run builds what build.requested asks for, and serves the webhooks that
// request builds when it has a listener, until ctx is cancelled.
func Run(ctx context.Context, cfg Config) error {
	w, err := cfg.Worker(ctx, "builder")
	if err != nil {
		return err
	}
	dirs, err := openWorkDirs(cfg.WorkDir)
	if err != nil {
		return err
	}
	defer dirs.close()
	b := &builder{Worker: w, cfg: cfg, dirs: dirs}
	r := b.Bus.Router(bus.ConsumerSpec{Durable: "builder"})
	r.Handle(events.BuildRequested, bus.Data(b.handle))
	hooks := NewWebhooks(cfg.Webhook, b.Bus, b.Registry, b.Tags)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return r.Run(gctx) })
	g.Go(func() error { return hooks.Watch(gctx, b.Bus.JetStream(), cfg.Log()) })
	if cfg.WebhookListener != nil {
		mux := http.NewServeMux()
		hooks.Register(mux)
		srv := &http.Server{Handler: LogDeliveries(cfg.Log(), service.JSONErrors("/webhooks/", mux)), ReadHeaderTimeout: 10 * time.Second}
		g.Go(func() error { return service.Serve(gctx, srv, cfg.WebhookListener, "webhooks") })
	}
	return g.Wait()
}

type builder struct {
	service.Worker
	cfg  Config
	dirs *workDirs
}

// handle builds what build.requested asks for. A build that cannot be made
// as asked (a *failure.Error of class input, not-found or auth) ends the
// run with build.failed; a failure of the blob store or a registry that may
// pass is tried again (Bus.Fail).
func (b *builder) handle(ctx context.Context, m bus.Message, req events.BuildRequest) error {
	// The event carries the build's small blobs (its manifests and
	// configs, mostly): the pusher reads them from it, and the blob store
	// gets the rest (oci.EmbedLimit).
	store := oci.NewEmbedding(b.Blobs)
	graph, commit, err := b.build(ctx, events.RunID(m.Event), req, store)
	if err == nil {
		err = store.Embed(ctx, &graph)
	}
	if err != nil {
		return b.Bus.Fail(ctx, m, events.BuildFailed, err, events.Failure{Target: req.Target, Commit: commit, Report: failure.Report{Stage: "build"},
			Evidence: events.Evidence{Request: m.Event.ID()}})
	}
	b.cfg.Log().Info(fmt.Sprintf("[BUILD] %s: %d descriptors", graph.Root.Digest, len(graph.Descriptors)),
		"run_id", events.RunID(m.Event), "digest", graph.Root.Digest.String())
	_, err = b.Bus.Emit(ctx, m.Event, events.BuildCompleted, "", events.BuildResult{
		Target: req.Target, Graph: graph, BlobStore: events.BlobBucket, PromoteTo: req.PromoteTo, Tag: req.Tag,
		RequestedAt: m.Event.Time().UTC(), Commit: commit, Evidence: events.Evidence{Request: m.Event.ID()},
	})
	return err
}

// build builds what req asks for into store, and returns its graph and,
// for a git source, the commit it checked out (also when the build failed
// after the checkout).
func (b *builder) build(ctx context.Context, runID string, req events.BuildRequest, store oci.BlobStore) (oci.Graph, string, error) {
	ref, err := name.ParseReference(req.Target)
	if err != nil {
		return oci.Graph{}, "", failure.New(failure.Input, err, "the target must be an image reference such as registry.example.com/team/app:tag")
	}
	if req.Source.Kind == events.SourceLayout {
		g, err := importLayout(ctx, req.Source.Path, store)
		return g, "", err
	}
	dir, cleanup, err := b.source(ctx, req.Source)
	if err != nil {
		return oci.Graph{}, dir.commit, err
	}
	defer cleanup()
	spec := req.Spec
	if req.Source.Kind == events.SourceGit {
		// Record where the image came from, unless the request says otherwise.
		spec.Annotations = withDefaults(spec.Annotations, map[string]string{
			v1.AnnotationSource: redactGitURL(req.Source.URL), v1.AnnotationRevision: dir.commit,
		})
	}
	g, err := Build(ctx, dir.path, spec, Options{Created: b.cfg.Created, Name: ref.Context().Name(), Registry: b.Registry,
		Signer: b.cfg.Signer, Origin: Origin{Source: req.Source, Commit: dir.commit, RunID: runID}}, store)
	return g, dir.commit, err
}

// importLayout copies an existing OCI layout's artifact into the blob store,
// unchanged: a layout built elsewhere goes through push, verify and promotion.
func importLayout(ctx context.Context, path string, store oci.BlobStore) (oci.Graph, error) {
	layout, err := oci.OpenLayout(path)
	if err != nil {
		return oci.Graph{}, failure.New(failure.NotFound, err, "source.path must be an OCI image layout the builder can read")
	}
	g, err := layout.Graph(ctx)
	if err != nil {
		return oci.Graph{}, failure.New(failure.Input, err, "the layout must hold one image (plus artifacts attached to it)")
	}
	for _, part := range append([]oci.Graph{g}, g.Referrers...) {
		for _, d := range part.Descriptors {
			if err := oci.CopyBlob(ctx, store, layout, d); err != nil {
				return oci.Graph{}, fmt.Errorf("%w: import %s: %w", oci.ErrStore, d.Digest, err)
			}
		}
	}
	return g, nil
}

func withDefaults(m, defaults map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range defaults {
		out[k] = v
	}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Options are the parts of a build that are not in its spec.
type Options struct {
	Created  time.Time        // SOURCE_DATE_EPOCH
	Name     string           // names the image in its SBOM and its signature (registry/repository)
	Registry *registry.Client // pulls base images
	Jobs     int              // compression goroutines (0: one per core but one)
	// Signer, when set, signs the built image (or index) and attests its
	// SLSA provenance: a cosign signature and a signed in-toto statement,
	// attached as referrers.
	Signer sign.Signer
	// Origin is where the source came from, for the provenance.
	Origin Origin
}

// Build builds the image of dir as its digestline.yaml, overridden by spec,
// describes — on its base, with what it attaches (an SBOM, a signature
// when opts has a Signer) — and puts every blob into store. A
// *failure.Error says what the requester must fix.
func Build(ctx context.Context, dir string, spec events.BuildSpec, opts Options, store oci.BlobStore) (oci.Graph, error) {
	started := time.Now()
	spec, err := ResolveSpec(dir, spec)
	if err != nil {
		return oci.Graph{}, failure.New(failure.Input, err, "fix "+SpecFile+" or "+IgnoreFile+" in the source")
	}
	graph, base, err := build(ctx, dir, spec, opts, store)
	if err != nil || opts.Signer == nil {
		return graph, err
	}
	prov := provenance(graph.Root, base, opts.Origin, spec, started)
	// The signature and the attested provenance are stored at once: each is
	// a few small blobs, a round trip to the store apiece.
	var sig, att oci.Graph
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		if sig, err = sign.SignImage(gctx, opts.Signer, opts.Name, graph.Root, opts.Created, store); err != nil {
			return fmt.Errorf("signature: %w", err)
		}
		return nil
	})
	g.Go(func() (err error) {
		if att, err = sign.Attest(gctx, opts.Signer, opts.Name, graph.Root, sign.PredicateSLSAProvenance, prov, opts.Created, store); err != nil {
			return fmt.Errorf("provenance: %w", err)
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return oci.Graph{}, err
	}
	graph.Referrers = append(graph.Referrers, sig, att)
	return graph, nil
}

// build builds the image (or index) of the resolved spec, and its SBOM.
// It returns the base the image was built on (nil: scratch, or an index).
func build(ctx context.Context, dir string, spec events.BuildSpec, opts Options, store oci.BlobStore) (oci.Graph, *oci.BaseImage, error) {
	config, err := ImageConfig(spec, opts.Created)
	if err != nil {
		return oci.Graph{}, nil, failure.New(failure.Input, err, "fix the build spec (platform os/arch, compression gzip|zstd|none, mediaTypes oci|docker)")
	}
	config.Format.Jobs = opts.Jobs
	if opts.Registry == nil {
		ropts, err := registry.OptionsFromEnv()
		if err != nil {
			return oci.Graph{}, nil, failure.New(failure.Input, err, "fix the registry settings in the builder's environment")
		}
		opts.Registry = registry.New(ropts...)
	}
	if spec.Go != nil && config.Entrypoint == nil {
		config.Entrypoint = []string{goBinaryPath(*spec.Go)}
	}
	if multiPlatform(spec) {
		if spec.SBOM {
			return oci.Graph{}, nil, failure.New(failure.Input, errors.New("sbom is not supported for multi-platform builds yet"), "drop sbom for multi-platform builds, or build each platform's image with its own")
		}
		graph, err := buildIndex(ctx, dir, spec, config, opts, store)
		return graph, nil, err
	}
	tree, cleanup, err := platformTree(ctx, dir, spec.Platform, config.Platform, spec)
	if err != nil {
		return oci.Graph{}, nil, err
	}
	defer cleanup()
	if config.Base, err = ResolveBase(ctx, spec.Base, config.Platform, opts.Registry, store); err != nil {
		return oci.Graph{}, nil, baseError(err)
	}
	graph, err := oci.BuildImage(ctx, tree, config, store)
	if err != nil {
		return oci.Graph{}, nil, imageError(ctx, err)
	}
	if !spec.SBOM {
		return graph, config.Base, nil
	}
	sboms, err := oci.BuildSBOMs(ctx, graph, opts.Name, config.Created, store)
	if err != nil {
		return oci.Graph{}, nil, fmt.Errorf("sbom: %w", err)
	}
	graph.Referrers = append(graph.Referrers, sboms...)
	return graph, config.Base, nil
}

// baseError classifies a base image failure: a registry's class when it came
// from one (auth, not-found, transport…), else a bad request.
func baseError(err error) error {
	if errors.Is(err, oci.ErrStore) {
		return err
	}
	var rerr *failure.Error
	if errors.As(err, &rerr) {
		e := *rerr
		e.Hint = "the base image could not be pulled: " + e.Hint
		return &e
	}
	return failure.New(failure.Input, err, "set base to scratch, oci:PATH, or a registry reference the builder can pull")
}

// sourceTree is a build's input on disk.
type sourceTree struct {
	path   string
	commit string // for git sources: the resolved commit id
}

// source returns the directory to build: the source's, or its Dir. A
// Dir the checkout lacks fails with the commit checked out named.
func (b *builder) source(ctx context.Context, src events.Source) (sourceTree, func(), error) {
	if src.Dir != "" && !filepath.IsLocal(filepath.FromSlash(src.Dir)) {
		return sourceTree{}, func() {}, failure.New(failure.Input, fmt.Errorf("source.dir %q", src.Dir), "source.dir must be a directory within the source, relative to its root, e.g. services/api")
	}
	tree, cleanup, err := b.sourceRoot(ctx, src)
	if err != nil || src.Dir == "" {
		return tree, cleanup, err
	}
	sub, err := within(tree.path, filepath.FromSlash(src.Dir))
	if err != nil {
		cleanup()
		return sourceTree{commit: tree.commit}, func() {}, failure.New(failure.Input, fmt.Errorf("source.dir %q: %w", src.Dir, err), "source.dir must name a directory of the source (of the commit, for a push), relative to its root")
	}
	tree.path = sub
	return tree, cleanup, nil
}

// within is the directory rel of root, refusing one that is not there or
// whose symlinks lead out of root.
func within(root, rel string) (string, error) {
	real, err := filepath.EvalSymlinks(filepath.Join(root, rel))
	if err != nil {
		return "", errors.New("no such directory")
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", err
	}
	if r, err := filepath.Rel(realRoot, real); err != nil || !filepath.IsLocal(r) && r != "." {
		return "", errors.New("a symlink out of the source")
	}
	if st, err := os.Stat(real); err != nil || !st.IsDir() {
		return "", errors.New("not a directory")
	}
	return real, nil
}

// sourceRoot returns a directory holding the whole build input.
func (b *builder) sourceRoot(ctx context.Context, src events.Source) (sourceTree, func(), error) {
	noop := func() {}
	switch src.Kind {
	case events.SourceDir:
		if st, err := os.Stat(src.Path); err != nil || !st.IsDir() {
			return sourceTree{}, noop, failure.New(failure.NotFound, fmt.Errorf("source directory %q: not found or not a directory", src.Path), "source.path must be a directory the builder can read")
		}
		return sourceTree{path: src.Path}, noop, nil
	case events.SourceObject:
		d, err := digest.Parse(src.Object)
		if err != nil {
			return sourceTree{}, noop, failure.New(failure.Input, err, "source.object must be the digest of a tarball in the blob store")
		}
		return b.unpack(ctx, d)
	case events.SourceGit:
		dir, cleanup, err := b.dirs.temp()
		if err != nil {
			return sourceTree{}, noop, err
		}
		commit, err := gitCheckout(ctx, src, dir)
		if err != nil {
			cleanup()
			return sourceTree{}, noop, err
		}
		return sourceTree{path: dir, commit: commit}, cleanup, nil
	}
	return sourceTree{}, noop, failure.New(failure.Input, fmt.Errorf("unknown source kind %q", src.Kind), "source.kind must be dir, object, git or layout")
}

// unpack unpacks the source tarball d over the tree of a kept directory
// (workDirs), or, when it cannot be unpacked over a tree (oci.ErrNotOver),
// into a new directory removed after the build.
func (b *builder) unpack(ctx context.Context, d digest.Digest) (sourceTree, func(), error) {
	noop := func() {}
	dir, err := b.dirs.take()
	if err != nil {
		return sourceTree{}, noop, err
	}
	err = b.extract(ctx, d, func(r io.Reader) error { return oci.ExtractTarOver(r, dir, oci.DefaultExtractLimits) })
	if err == nil {
		return sourceTree{path: dir}, func() { b.dirs.give(dir) }, nil
	}
	_ = os.RemoveAll(dir)
	if !errors.Is(err, oci.ErrNotOver) {
		return sourceTree{}, noop, err
	}
	dir, cleanup, err := b.dirs.temp()
	if err != nil {
		return sourceTree{}, noop, err
	}
	if err := b.extract(ctx, d, func(r io.Reader) error { return oci.ExtractTar(r, dir, oci.DefaultExtractLimits) }); err != nil {
		cleanup()
		return sourceTree{}, noop, err
	}
	return sourceTree{path: dir}, cleanup, nil
}

// extract hands the source tarball d to unpack. A tarball the blob store
// does not hold, or one unpack refuses (but for oci.ErrNotOver), is a
// *failure.Error that says what the requester must fix.
func (b *builder) extract(ctx context.Context, d digest.Digest, unpack func(io.Reader) error) error {
	rc, err := b.Blobs.Open(ctx, d)
	if errors.Is(err, oci.ErrBlobNotFound) {
		return failure.New(failure.NotFound, err, "upload the source tarball to the blob store before requesting the build ('digestline ship' does)")
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	// The blob store checked the tarball against its digest when it was put.
	err = unpack(rc)
	if err != nil && !errors.Is(err, oci.ErrNotOver) {
		return failure.New(failure.Input, err, "the source tarball is unsafe or corrupt: rebuild it from a clean tree")
	}
	return err
}
