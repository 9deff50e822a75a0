package main

import (
	"fmt"
	"os"

	"github.com/digestline/digestline/pkg/oci"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"
)

func newPullCommand() *cobra.Command {
	var out, tag, unpack, platform string
	cmd := &cobra.Command{
		Use:   "pull REPOSITORY@sha256:... [-o LAYOUT] [--unpack DIR]",
		Short: "Pull an image or index by digest into an OCI layout, checking every manifest and blob against its descriptor",
		Long: "pull copies the image into an OCI layout, refusing any blob that does not match its descriptor. With\n" +
			"--unpack DIR it then applies the layers in order into DIR as a root filesystem, honouring whiteouts and opaque\n" +
			"directories and refusing any entry that would land outside DIR (.., absolute names, links pointing out, writes\n" +
			"through a symlink an earlier layer planted); the error names the layer and the entry.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := name.NewDigest(args[0])
			if err != nil {
				return fmt.Errorf("pull takes a digest reference, REPOSITORY@sha256:<hex>: %w", err)
			}
			ctx := cmd.Context()
			repo, err := openRepo(ctx, ref.Context())
			if err != nil {
				return err
			}
			_, root, err := repo.GetManifest(ctx, ref.DigestStr()) // checked against the digest
			if err != nil {
				return err
			}
			g, err := oci.Walk(ctx, repo.Manifests(), root)
			if err != nil {
				return err
			}
			if unpack != "" && !cmd.Flags().Changed("output") {
				tmp, err := os.MkdirTemp("", "digestline-pull-*")
				if err != nil {
					return err
				}
				defer os.RemoveAll(tmp)
				out = tmp
			}
			layout, err := oci.CreateLayout(out)
			if err != nil {
				return err
			}
			// Put checks each blob's digest and size as it streams in: a
			// corrupted or substituted blob never lands in the layout.
			for _, d := range g.Blobs() {
				if err := oci.CopyBlob(ctx, layout, repo, d); err != nil {
					return fmt.Errorf("blob %s: %w", d.Digest, err)
				}
			}
			for _, d := range g.Manifests() {
				if err := oci.CopyBlob(ctx, layout, repo.Manifests(), d); err != nil {
					return fmt.Errorf("manifest %s: %w", d.Digest, err)
				}
			}
			if err := layout.SetRoot(g.Root, tag); err != nil {
				return err
			}
			if unpack == "" {
				fmt.Fprintf(cmd.OutOrStdout(), "pulled %s (%d descriptors) into %s\n", ref, len(g.Descriptors), out)
				return nil
			}
			p, err := oci.ParsePlatform(platform)
			if err != nil {
				return err
			}
			if err := oci.Unpack(ctx, layout, g.Root, p, unpack, oci.DefaultExtractLimits); err != nil {
				return fmt.Errorf("unpack %s into %s: %w", ref, unpack, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "unpacked %s into %s\n", ref, unpack)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", defaultLayout, "OCI image layout to write")
	cmd.Flags().StringVarP(&tag, "tag", "t", "latest", "name of the image in the layout")
	cmd.Flags().StringVar(&unpack, "unpack", "", "also apply the layers into this directory as a root filesystem")
	cmd.Flags().StringVar(&platform, "platform", "", "platform to unpack from an index, os/arch[/variant] (default linux/amd64)")
	return cmd
}
