package main

import (
	"fmt"

	"github.com/digestline/digestline/pkg/oci"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"
)

func newPullCommand() *cobra.Command {
	var out, tag string
	cmd := &cobra.Command{
		Use:   "pull REPOSITORY@sha256:... -o LAYOUT",
		Short: "Pull an image or index by digest into an OCI layout, checking every manifest and blob against its descriptor",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := name.NewDigest(args[0])
			if err != nil {
				return fmt.Errorf("pull takes a digest reference, REPOSITORY@sha256:<hex>: %w", err)
			}
			ctx := cmd.Context()
			repo, err := registryClient().Open(ctx, ref.Context(), false)
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
			fmt.Fprintf(cmd.OutOrStdout(), "pulled %s (%d descriptors) into %s\n", ref, len(g.Descriptors), out)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", defaultLayout, "OCI image layout to write")
	cmd.Flags().StringVarP(&tag, "tag", "t", "latest", "name of the image in the layout")
	return cmd
}
