package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

// node is one descriptor in a printed tree.
type node struct {
	Label        string        `json:"label"`
	MediaType    string        `json:"mediaType"`
	ArtifactType string        `json:"artifactType,omitempty"`
	Digest       digest.Digest `json:"digest"`
	Size         int64         `json:"size"`
	Children     []node        `json:"children,omitempty"`
}

// print writes the tree with box-drawing branches.
func (n node) print(w io.Writer, prefix string, last, root bool) {
	branch, next := "", ""
	if !root {
		branch, next = "├── ", "│   "
		if last {
			branch, next = "└── ", "    "
		}
	}
	what := n.MediaType
	if n.ArtifactType != "" {
		what = n.ArtifactType
	}
	size := ""
	if n.Size > 0 {
		size = fmt.Sprintf(" %d B", n.Size)
	}
	fmt.Fprintf(w, "%s%s%s %s%s %s\n", prefix, branch, n.Label, n.Digest, size, what)
	for i, c := range n.Children {
		c.print(w, prefix+next, i == len(n.Children)-1, false)
	}
}

// emit prints tree, as JSON or drawn.
func emit(w io.Writer, asJSON bool, tree node) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(tree)
	}
	tree.print(w, "", true, true)
	return nil
}

// openRef authenticates for pull and resolves ref to its manifest descriptor.
func openRef(ctx context.Context, s string) (*registry.Repo, name.Reference, v1.Descriptor, error) {
	ref, err := name.ParseReference(s)
	if err != nil {
		return nil, nil, v1.Descriptor{}, fmt.Errorf("reference %q: %w", s, err)
	}
	repo, err := openRepo(ctx, ref.Context())
	if err != nil {
		return nil, nil, v1.Descriptor{}, err
	}
	_, desc, err := repo.GetManifest(ctx, ref.Identifier())
	if err != nil {
		return nil, nil, v1.Descriptor{}, err
	}
	return repo, ref, desc, nil
}

// readOptions are the flags of the read-side commands: inspect, discover
// and tags.
type readOptions struct {
	asJSON   bool
	pageSize int // tags
}

func newInspectCommand() *cobra.Command {
	o := &readOptions{}
	cmd := &cobra.Command{
		Use:   "inspect REF",
		Short: "Print the descriptor tree of an image or index: platform manifests, config and layers, with sizes and media types",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.inspect(cmd.Context(), args[0], cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print the tree as JSON")
	return cmd
}

// inspect prints the descriptor tree of target.
func (o *readOptions) inspect(ctx context.Context, target string, w io.Writer) error {
	repo, ref, desc, err := openRef(ctx, target)
	if err != nil {
		return err
	}
	tree, err := inspect(ctx, repo, desc, ref.Context().Name())
	if err != nil {
		return err
	}
	return emit(w, o.asJSON, tree)
}

// inspect reads a manifest (checked against its digest) and its children.
func inspect(ctx context.Context, repo *registry.Repo, d v1.Descriptor, label string) (node, error) {
	n := node{Label: label, MediaType: d.MediaType, ArtifactType: d.ArtifactType, Digest: d.Digest, Size: d.Size}
	body, got, err := repo.GetManifest(ctx, d.Digest.String())
	if err != nil {
		return n, err
	}
	n.MediaType, n.Size = got.MediaType, got.Size
	children, err := oci.Children(got.MediaType, body)
	if err != nil {
		return n, err
	}
	for i, c := range children {
		switch {
		case oci.IsManifest(c.MediaType):
			label := fmt.Sprintf("manifest %d", i)
			if c.Platform != nil {
				label = c.Platform.OS + "/" + c.Platform.Architecture
				if c.Platform.Variant != "" {
					label += "/" + c.Platform.Variant
				}
			}
			child, err := inspect(ctx, repo, c, label)
			if err != nil {
				return n, err
			}
			n.Children = append(n.Children, child)
		case i == 0:
			n.Children = append(n.Children, node{Label: "config", MediaType: c.MediaType, Digest: c.Digest, Size: c.Size})
		default:
			label := fmt.Sprintf("layer %d", i)
			if t := c.Annotations[v1.AnnotationTitle]; t != "" {
				label += " " + t
			}
			n.Children = append(n.Children, node{Label: label, MediaType: c.MediaType, Digest: c.Digest, Size: c.Size})
		}
	}
	return n, nil
}

// maxReferrerDepth bounds discover on a registry whose referrers loop.
const maxReferrerDepth = 16

func newDiscoverCommand() *cobra.Command {
	o := &readOptions{}
	cmd := &cobra.Command{
		Use:   "discover REF",
		Short: "Print the tree of artifacts attached to an image (signatures, SBOMs, their signatures…), via the referrers API or the fallback tag",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.discover(cmd.Context(), args[0], cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print the tree as JSON")
	return cmd
}

// discover prints the tree of what is attached to target.
func (o *readOptions) discover(ctx context.Context, target string, w io.Writer) error {
	repo, ref, desc, err := openRef(ctx, target)
	if err != nil {
		return err
	}
	tree := node{Label: ref.Context().Name(), MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}
	if tree.Children, err = discover(ctx, repo, desc.Digest, map[digest.Digest]bool{desc.Digest: true}, 0); err != nil {
		return err
	}
	return emit(w, o.asJSON, tree)
}

// discover lists subject's referrers, and theirs, to maxReferrerDepth.
func discover(ctx context.Context, repo *registry.Repo, subject digest.Digest, seen map[digest.Digest]bool, depth int) ([]node, error) {
	if depth >= maxReferrerDepth {
		return nil, nil
	}
	refs, err := repo.Referrers(ctx, subject)
	if err != nil {
		return nil, err
	}
	var out []node
	for _, r := range refs {
		if seen[r.Digest] {
			continue
		}
		seen[r.Digest] = true
		n := node{Label: "referrer", MediaType: r.MediaType, ArtifactType: r.ArtifactType, Digest: r.Digest, Size: r.Size}
		if n.Children, err = discover(ctx, repo, r.Digest, seen, depth+1); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

func newTagsCommand() *cobra.Command {
	o := &readOptions{}
	cmd := &cobra.Command{
		Use:   "tags REPOSITORY",
		Short: "List a repository's tags (all pages)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.tags(cmd.Context(), args[0], cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print the tags as a JSON array")
	cmd.Flags().IntVar(&o.pageSize, "page-size", 100, "tags asked for per request")
	return cmd
}

// tags prints every tag of repository, following the registry's pages.
func (o *readOptions) tags(ctx context.Context, repository string, w io.Writer) error {
	repoName, err := name.NewRepository(repository)
	if err != nil {
		return fmt.Errorf("repository %q: %w", repository, err)
	}
	repo, err := openRepo(ctx, repoName)
	if err != nil {
		return err
	}
	tags, err := repo.Tags(ctx, o.pageSize)
	if err != nil {
		return err
	}
	if o.asJSON {
		if tags == nil {
			tags = []string{}
		}
		return json.NewEncoder(w).Encode(tags)
	}
	if len(tags) > 0 {
		fmt.Fprintln(w, strings.Join(tags, "\n"))
	}
	return nil
}
