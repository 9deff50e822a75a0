package main

import (
	"cmp"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/digestline/digestline/cmd/digestline/internal/progress"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/digestline/digestline/pkg/verify"
	"github.com/digestline/digestline/services/builder"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"
)

// defaultLayout is where build writes and push reads when no layout is named.
var defaultLayout = filepath.Join(".digestline", "layout")

func newBuildCommand() *cobra.Command {
	var (
		out, tag, signKey, imageName string
		jobs                         int
	)
	cmd := &cobra.Command{
		Use:   "build DIR|TARBALL",
		Short: "Build a directory (or a tarball of one) into a deterministic OCI image in an OCI image layout",
		Args:  cobra.ExactArgs(1),
	}
	spec := specFlags(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		s, err := spec()
		if err != nil {
			return err
		}
		created, err := oci.SourceDateEpoch()
		if err != nil {
			return err
		}
		layout, err := oci.CreateLayout(out)
		if err != nil {
			return err
		}
		src, cleanup, err := buildSource(args[0])
		if err != nil {
			return err
		}
		defer cleanup()
		client, err := registryClient()
		if err != nil {
			return err
		}
		var signer sign.Signer
		if signKey != "" {
			if signer, err = sign.LoadSigner(signKey, sign.PasswordFromEnv()); err != nil {
				return err
			}
		}
		g, err := builder.Build(cmd.Context(), src, s, builder.Options{
			Created: created, Name: cmp.Or(imageName, filepath.Base(filepath.Clean(args[0]))), Registry: client, Jobs: jobs, Signer: signer,
			Origin: builder.Origin{Source: events.Source{Kind: events.SourceDir, Path: args[0]}},
		}, layout)
		if err != nil {
			return err
		}
		if err := layout.SetGraph(g, tag); err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		fmt.Fprintln(w, g.Root.Digest)
		printDescriptors(w, g)
		for _, r := range g.Referrers {
			fmt.Fprintf(w, "attached %s %s\n", r.Root.ArtifactType, r.Root.Digest)
		}
		fmt.Fprintf(w, "layout: %s\n", out)
		return nil
	}
	cmd.Flags().StringVarP(&out, "output", "o", defaultLayout, "OCI image layout to write")
	cmd.Flags().StringVarP(&tag, "tag", "t", "latest", "name of the image in the layout (org.opencontainers.image.ref.name), as in oci:LAYOUT:NAME")
	cmd.Flags().IntVar(&jobs, "jobs", 0, "compression goroutines (0: one per core but one); never changes the digest")
	cmd.Flags().StringVar(&signKey, "sign-key", os.Getenv("DIGESTLINE_SIGNING_KEY"),
		"sign the image with this private key (PEM: ECDSA P-256 or Ed25519, or cosign's encrypted key with COSIGN_PASSWORD): a cosign signature attached as a referrer (default: DIGESTLINE_SIGNING_KEY)")
	cmd.Flags().StringVar(&imageName, "name", "", "the image's name, registry/repository, in its SBOM and signature (default: the directory's name)")
	return cmd
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

func newPushCommand() *cobra.Command {
	var (
		guard  *events.TagGuard
		jobs   int
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "push [LAYOUT] REF",
		Short: "Push an OCI image layout to REF stage by stage (default layout: " + defaultLayout + ")",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, target := defaultLayout, args[0]
			if len(args) == 2 {
				dir, target = args[0], args[1]
			}
			ref, err := name.ParseReference(target)
			if err != nil {
				return fmt.Errorf("reference %q: %w", target, err)
			}
			layout, err := oci.OpenLayout(dir)
			if err != nil {
				return err
			}
			g, err := layout.Graph(cmd.Context())
			if err != nil {
				return err
			}
			opts, err := registry.TagOptions(*guard)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			enc := json.NewEncoder(w)
			observe := func(_ context.Context, r events.StageReport) {
				_ = enc.Encode(r)
			}
			var view *progress.View
			if !asJSON {
				view = progress.New(w)
				observe = func(_ context.Context, r events.StageReport) { view.Println(r.Line) }
				if view.Live() { // otherwise blob files go to the socket untouched (sendfile)
					opts = append(opts, registry.WithProgress(view.Blob))
				}
			}
			client, err := registryClient(registry.WithJobs(jobs))
			if err != nil {
				return err
			}
			res, err := client.Push(cmd.Context(), ref, g, layout, observe, opts...)
			view.Close()
			if err != nil {
				return &exitCodeError{code: 2, err: err}
			}
			if !asJSON {
				fmt.Fprintf(w, "pushed %s@%s: %d uploaded, %d existing, %d requests\n", ref.Context().Name(), res.Digest, res.Uploaded, res.Existing, res.Requests)
			}
			return nil
		},
	}
	guard = tagGuardFlags(cmd.Flags())
	cmd.Flags().IntVar(&jobs, "jobs", 4, "blobs checked and uploaded at once")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print each stage as a JSON line (the push.stage event's data) instead of [STAGE] lines")
	return cmd
}

func newVerifyCommand() *cobra.Command {
	var (
		jobs     int
		keyFiles []string
	)
	cmd := &cobra.Command{
		Use:   "verify REF@sha256:... [--key cosign.pub]...",
		Short: "Pull REF by digest and prove every byte matches its descriptors (and, with --key, that a trusted key signed it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := name.NewDigest(args[0])
			if err != nil {
				return fmt.Errorf("verify takes a digest reference, REPOSITORY@sha256:<hex>: %w", err)
			}
			client, err := registryClient()
			if err != nil {
				return err
			}
			keys, err := sign.LoadVerifiers(keyFiles)
			if err != nil {
				return err
			}
			rep, err := verify.Image(cmd.Context(), client, ref, nil, verify.Options{Jobs: jobs, Keys: keys})
			if err != nil {
				return &exitCodeError{code: 2, err: err}
			}
			for _, c := range rep.Checks {
				fmt.Fprintln(cmd.OutOrStdout(), c)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&jobs, "jobs", 4, "blobs hashed in parallel")
	cmd.Flags().StringSliceVar(&keyFiles, "key", strings.Split(os.Getenv("DIGESTLINE_TRUSTED_KEYS"), ","),
		"trusted public key (PEM, e.g. cosign.pub; repeat for several): every cosign signature attached must be one of theirs, and there must be one (default: DIGESTLINE_TRUSTED_KEYS)")
	return cmd
}
