package main

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/digestline/digestline/cmd/digestline/internal/progress"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/services/builder"
	"github.com/digestline/digestline/services/pusher"
	"github.com/digestline/digestline/services/verifier"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"
)

// defaultLayout is where build writes and push reads when no layout is named.
var defaultLayout = filepath.Join(".digestline", "layout")

func newBuildCommand() *cobra.Command {
	var (
		out, tag string
		jobs     int
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
		g, err := builder.Build(cmd.Context(), src, s, builder.Options{
			Created: created, Name: filepath.Base(filepath.Clean(args[0])), Registry: client, Jobs: jobs,
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
			opts, err := pusher.TagOptions(*guard)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			enc := json.NewEncoder(w)
			observe := func(_ context.Context, r registry.StageReport) {
				_ = enc.Encode(r)
			}
			var view *progress.View
			if !asJSON {
				view = progress.New(w)
				observe = func(_ context.Context, r registry.StageReport) { view.Println(r.Line) }
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
	var jobs int
	cmd := &cobra.Command{
		Use:   "verify REF@sha256:...",
		Short: "Pull REF by digest and prove every byte matches its descriptors",
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
			rep, err := verifier.Verify(cmd.Context(), client, ref, nil, jobs)
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
	return cmd
}
