package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/digestline/digestline/pkg/oci"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"
)

func newAttachCommand() *cobra.Command {
	var (
		artifactType string
		annotations  []string
	)
	cmd := &cobra.Command{
		Use:   "attach REPOSITORY@sha256:... FILE[:MEDIATYPE]...",
		Short: "Push files as an OCI artifact attached to an image (a signature, an SBOM, a report)",
		Long: "attach builds an OCI artifact — artifactType, the empty config, one layer per file titled with its name —\n" +
			"whose subject is the given manifest, and pushes it to the same repository. Registries with the referrers\n" +
			"API list it there; for others the sha256-<hex> fallback tag index is updated.",
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			subjectRef, err := name.NewDigest(args[0])
			if err != nil {
				return fmt.Errorf("attach to a digest reference, REPOSITORY@sha256:<hex>: %w", err)
			}
			ann, err := keyValues("--annotation", annotations)
			if err != nil {
				return err
			}
			var files []oci.ArtifactFile
			for _, a := range args[1:] {
				path, mediaType, _ := strings.Cut(a, ":")
				files = append(files, oci.ArtifactFile{Path: path, MediaType: mediaType})
			}
			ctx := cmd.Context()
			client, err := registryClient()
			if err != nil {
				return err
			}
			repo, err := client.Open(ctx, subjectRef.Context(), false)
			if err != nil {
				return err
			}
			subject, found, err := repo.HeadManifest(ctx, subjectRef.DigestStr())
			if err != nil {
				return err
			}
			if !found {
				return fmt.Errorf("%s is not in the registry: push the image first", subjectRef)
			}
			work, err := os.MkdirTemp("", "digestline-attach-*")
			if err != nil {
				return err
			}
			defer os.RemoveAll(work)
			layout, err := oci.CreateLayout(work)
			if err != nil {
				return err
			}
			created, err := oci.SourceDateEpoch()
			if err != nil {
				return err
			}
			g, err := oci.BuildArtifact(ctx, oci.ArtifactConfig{ArtifactType: artifactType, Files: files, Annotations: ann, Subject: &subject, Created: created}, layout)
			if err != nil {
				return err
			}
			target := subjectRef.Context().Digest(g.Root.Digest.String())
			if _, err := client.Push(ctx, target, g, layout, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "attached %s %s to %s\n", artifactType, g.Root.Digest, subjectRef)
			return nil
		},
	}
	cmd.Flags().StringVar(&artifactType, "artifact-type", "", "the artifact's type, e.g. application/vnd.example.signature.v1+json (required)")
	cmd.Flags().StringArrayVar(&annotations, "annotation", nil, "KEY=VALUE manifest annotation (repeatable)")
	_ = cmd.MarkFlagRequired("artifact-type")
	return cmd
}
