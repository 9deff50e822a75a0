package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"
)

// pullOptions are pull's flags.
type pullOptions struct {
	out, tag, unpack, platform string
	outGiven                   bool // -o was named: with --unpack, keep the layout there
}

func newPullCommand() *cobra.Command {
	o := &pullOptions{}
	cmd := &cobra.Command{
		Use:   "pull REPOSITORY@sha256:... [-o LAYOUT] [--unpack DIR]",
		Short: "Pull an image or index by digest into an OCI layout, checking every manifest and blob against its descriptor",
		Long: "pull copies the image into an OCI layout, refusing any blob that does not match its descriptor. With\n" +
			"--unpack DIR it then applies the layers in order into DIR as a root filesystem, honouring whiteouts and opaque\n" +
			"directories and refusing any entry that would land outside DIR (.., absolute names, links pointing out, writes\n" +
			"through a symlink an earlier layer planted); the error names the layer and the entry.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.outGiven = cmd.Flags().Changed("output")
			return o.run(cmd.Context(), args[0], cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVarP(&o.out, "output", "o", defaultLayout, "OCI image layout to write")
	cmd.Flags().StringVarP(&o.tag, "tag", "t", "latest", "name of the image in the layout")
	cmd.Flags().StringVar(&o.unpack, "unpack", "", "also apply the layers into this directory as a root filesystem")
	cmd.Flags().StringVar(&o.platform, "platform", "", "platform to unpack from an index, os/arch[/variant] (default linux/amd64)")
	return cmd
}

// run pulls target into the layout, every blob checked as it streams in,
// then unpacks it when asked.
func (o *pullOptions) run(ctx context.Context, target string, w io.Writer) error {
	ref, err := digestRef("pull", target)
	if err != nil {
		return err
	}
	repo, err := openRepo(ctx, ref.Context())
	if err != nil {
		return err
	}
	out := o.out
	if o.unpack != "" && !o.outGiven {
		tmp, err := os.MkdirTemp("", "digestline-pull-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		out = tmp
	}
	layout, g, err := pullInto(ctx, repo, ref, out, o.tag)
	if err != nil {
		return err
	}
	if o.unpack == "" {
		fmt.Fprintf(w, "pulled %s (%d descriptors) into %s\n", ref, len(g.Descriptors), out)
		return nil
	}
	p, err := oci.ParsePlatform(o.platform)
	if err != nil {
		return err
	}
	if err := oci.Unpack(ctx, layout, g.Root, p, o.unpack, oci.DefaultExtractLimits); err != nil {
		return fmt.Errorf("unpack %s into %s: %w", ref, o.unpack, err)
	}
	fmt.Fprintf(w, "unpacked %s into %s\n", ref, o.unpack)
	return nil
}

// pullInto copies the graph of ref from repo into a new layout at dir,
// named tag there.
func pullInto(ctx context.Context, repo *registry.Repo, ref name.Digest, dir, tag string) (*oci.Layout, oci.Graph, error) {
	_, root, err := repo.GetManifest(ctx, ref.DigestStr()) // checked against the digest
	if err != nil {
		return nil, oci.Graph{}, err
	}
	g, err := oci.Walk(ctx, repo.Manifests(), root)
	if err != nil {
		return nil, g, err
	}
	layout, err := oci.CreateLayout(dir)
	if err != nil {
		return nil, g, err
	}
	// Put checks each blob's digest and size as it streams in: a corrupted
	// or substituted blob never lands in the layout.
	for _, d := range g.Blobs() {
		if err := oci.CopyBlob(ctx, layout, repo, d); err != nil {
			return nil, g, fmt.Errorf("blob %s: %w", d.Digest, err)
		}
	}
	for _, d := range g.Manifests() {
		if err := oci.CopyBlob(ctx, layout, repo.Manifests(), d); err != nil {
			return nil, g, fmt.Errorf("manifest %s: %w", d.Digest, err)
		}
	}
	return layout, g, layout.SetRoot(g.Root, tag)
}
