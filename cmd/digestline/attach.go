package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/digestline/digestline/pkg/oci"
	"github.com/spf13/cobra"
)

// attachOptions are attach's flags.
type attachOptions struct {
	artifactType string
	annotations  []string
}

func newAttachCommand() *cobra.Command {
	o := &attachOptions{}
	cmd := &cobra.Command{
		Use:   "attach REPOSITORY@sha256:... FILE[:MEDIATYPE]...",
		Short: "Push files as an OCI artifact attached to an image (a signature, an SBOM, a report)",
		Long: "attach builds an OCI artifact — artifactType, the empty config, one layer per file titled with its name —\n" +
			"whose subject is the given manifest, and pushes it to the same repository. Registries with the referrers\n" +
			"API list it there; for others the sha256-<hex> fallback tag index is updated.",
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), args[0], args[1:], cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&o.artifactType, "artifact-type", "", "the artifact's type, e.g. application/vnd.example.signature.v1+json (required)")
	cmd.Flags().StringArrayVar(&o.annotations, "annotation", nil, "KEY=VALUE manifest annotation (repeatable)")
	_ = cmd.MarkFlagRequired("artifact-type")
	return cmd
}

// run builds the artifact of files and pushes it with subject as its subject.
func (o *attachOptions) run(ctx context.Context, subject string, fileArgs []string, w io.Writer) error {
	subjectRef, err := digestRef("attach", subject)
	if err != nil {
		return err
	}
	ann, err := keyValues("--annotation", o.annotations)
	if err != nil {
		return err
	}
	var files []oci.ArtifactFile
	for _, a := range fileArgs {
		path, mediaType, _ := strings.Cut(a, ":")
		files = append(files, oci.ArtifactFile{Path: path, MediaType: mediaType})
	}
	client, err := registryClient()
	if err != nil {
		return err
	}
	repo, err := client.Open(ctx, subjectRef.Context(), false)
	if err != nil {
		return err
	}
	desc, found, err := repo.HeadManifest(ctx, subjectRef.DigestStr())
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
	g, err := oci.BuildArtifact(ctx, oci.ArtifactConfig{ArtifactType: o.artifactType, Files: files, Annotations: ann, Subject: &desc, Created: created}, layout)
	if err != nil {
		return err
	}
	target := subjectRef.Context().Digest(g.Root.Digest.String())
	if _, err := client.Push(ctx, target, g, layout, nil); err != nil {
		return err
	}
	fmt.Fprintf(w, "attached %s %s to %s\n", o.artifactType, g.Root.Digest, subjectRef)
	return nil
}
