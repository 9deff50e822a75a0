package main

import (
	"cmp"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/digestline/digestline/services/builder"
	"github.com/spf13/cobra"
)

// defaultLayout is where build writes and push reads when no layout is named.
var defaultLayout = filepath.Join(".digestline", "layout")

// buildOptions are build's flags. The standalone build runs the builder's
// own code in this process (the one place besides dev where the CLI
// imports a service).
type buildOptions struct {
	spec                         func() (events.BuildSpec, error)
	out, tag, signKey, imageName string
	jobs                         int
}

func newBuildCommand() *cobra.Command {
	o := &buildOptions{}
	cmd := &cobra.Command{
		Use:   "build DIR|TARBALL",
		Short: "Build a directory (or a tarball of one) into a deterministic OCI image in an OCI image layout",
		Args:  cobra.ExactArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), args[0], cmd.OutOrStdout()) },
	}
	fs := cmd.Flags()
	o.spec = specFlags(fs)
	fs.StringVarP(&o.out, "output", "o", defaultLayout, "OCI image layout to write")
	fs.StringVarP(&o.tag, "tag", "t", "latest", "name of the image in the layout (org.opencontainers.image.ref.name), as in oci:LAYOUT:NAME")
	fs.IntVar(&o.jobs, "jobs", 0, "compression goroutines (0: one per core but one); never changes the digest")
	fs.StringVar(&o.signKey, "sign-key", os.Getenv("DIGESTLINE_SIGNING_KEY"),
		"sign the image with this private key (PEM: ECDSA P-256 or Ed25519, or cosign's encrypted key with COSIGN_PASSWORD): a cosign signature attached as a referrer (default: DIGESTLINE_SIGNING_KEY)")
	fs.StringVar(&o.imageName, "name", "", "the image's name, registry/repository, in its SBOM and signature (default: the directory's name)")
	return cmd
}

// run builds source into the layout and prints the graph it made.
func (o *buildOptions) run(ctx context.Context, source string, w io.Writer) error {
	s, err := o.spec()
	if err != nil {
		return err
	}
	created, err := oci.SourceDateEpoch()
	if err != nil {
		return err
	}
	layout, err := oci.CreateLayout(o.out)
	if err != nil {
		return err
	}
	src, cleanup, err := buildSource(source)
	if err != nil {
		return err
	}
	defer cleanup()
	client, err := registryClient()
	if err != nil {
		return err
	}
	var signer sign.Signer
	if o.signKey != "" {
		if signer, err = sign.LoadSigner(o.signKey, sign.PasswordFromEnv()); err != nil {
			return err
		}
	}
	g, err := builder.Build(ctx, src, s, builder.Options{
		Created: created, Name: cmp.Or(o.imageName, filepath.Base(filepath.Clean(source))), Registry: client, Jobs: o.jobs, Signer: signer,
		Origin: builder.Origin{Source: events.Source{Kind: events.SourceDir, Path: source}},
	}, layout)
	if err != nil {
		return err
	}
	if err := layout.SetGraph(g, o.tag); err != nil {
		return err
	}
	fmt.Fprintln(w, g.Root.Digest)
	printDescriptors(w, g)
	for _, r := range g.Referrers {
		fmt.Fprintf(w, "attached %s %s\n", r.Root.ArtifactType, r.Root.Digest)
	}
	fmt.Fprintf(w, "layout: %s\n", o.out)
	return nil
}

// buildSource returns a directory to build: path itself, or a tarball (plain
// or gzip) unpacked into a temporary directory through the safe extractor.
func buildSource(path string) (string, func(), error) {
	noop := func() {}
	st, err := os.Stat(path)
	if err != nil {
		return "", noop, fmt.Errorf("build source: %w", err)
	}
	if st.IsDir() {
		return path, noop, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", noop, err
	}
	defer f.Close()
	var r io.Reader = f
	if zr, err := gzip.NewReader(f); err == nil {
		r = zr
	} else if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", noop, err
	}
	dir, err := os.MkdirTemp("", "digestline-build-*")
	if err != nil {
		return "", noop, err
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	if err := oci.ExtractTar(r, dir, oci.DefaultExtractLimits); err != nil {
		cleanup()
		return "", noop, fmt.Errorf("%s: %w", path, err)
	}
	return dir, cleanup, nil
}

func printDescriptors(w io.Writer, g oci.Graph) {
	for _, d := range g.Descriptors {
		fmt.Fprintf(w, "  %-50s %s %d\n", d.MediaType, d.Digest, d.Size)
	}
}
