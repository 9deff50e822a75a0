package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/digestline/digestline/pkg/verify"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
)

// copyOptions are copy's flags.
type copyOptions struct {
	referrers bool
	keyFiles  []string
	jobs      int
}

func newCopyCommand() *cobra.Command {
	o := &copyOptions{}
	cmd := &cobra.Command{
		Use:   "copy SRC@sha256:... DST[:TAG]",
		Short: "Copy an image by digest to another repository or registry, with what is attached to it; prove every byte at the destination before tagging it",
		Long: "copy reads the image (an index with every platform, or one image) from SRC by digest and pushes it to DST\n" +
			"stage by stage, blobs streaming registry to registry, skipping what DST has and mounting within DST's\n" +
			"registry where it can. With --referrers (the default) every artifact attached to it goes along — SBOMs,\n" +
			"signatures, attestations, what is attached to those, and what cosign keeps under sha256-<hex>.sig/.att/.sbom —\n" +
			"written the way DST supports (the referrers API or the fallback tag). Its verify stage pulls everything back\n" +
			"from DST and proves every byte and referrer (and, with --key, every signature), each blob as soon as it has\n" +
			"arrived; only then does TAG move. Exit status 2: the copy or its proof failed, nothing tagged.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), args[0], args[1], cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&o.referrers, "referrers", true, "copy every artifact attached to the image (and to those) too")
	cmd.Flags().StringSliceVar(&o.keyFiles, "key", strings.Split(os.Getenv("DIGESTLINE_TRUSTED_KEYS"), ","),
		"trusted public key: at the destination, the image must carry a signature by one of them, and every signature and attestation must verify (default: DIGESTLINE_TRUSTED_KEYS)")
	cmd.Flags().IntVar(&o.jobs, "jobs", 4, "blobs copied and hashed at once")
	return cmd
}

// run copies from to to, proves it there, then tags it.
func (o *copyOptions) run(ctx context.Context, from, to string, out io.Writer) error {
	src, err := digestRef("copy", from)
	if err != nil {
		return err
	}
	dst, tag, err := destination(to)
	if err != nil {
		return err
	}
	keys, err := sign.LoadVerifiers(o.keyFiles)
	if err != nil {
		return err
	}
	client, err := registryClient(registry.WithJobs(o.jobs))
	if err != nil {
		return err
	}
	srcRepo, err := client.Open(ctx, src.Context(), false)
	if err != nil {
		return &exitCodeError{code: 2, err: err}
	}
	// Read once, though the push reads the manifests again.
	g, source, err := srcRepo.Shared().Graph(ctx, digest.Digest(src.DigestStr()), o.referrers)
	if err != nil {
		return &exitCodeError{code: 2, err: fmt.Errorf("read %s: %w", src, err)}
	}
	byDigest := dst.Digest(g.Root.Digest.String())
	var ref name.Reference = byDigest
	if tag != "" {
		ref = dst.Tag(tag)
	}
	// Each blob is hashed at the destination as soon as it has arrived,
	// while the rest is copied; the tag moves once all is.
	proof := verify.NewAhead(ctx, client, byDigest, g, verify.Options{Jobs: o.jobs, Keys: keys})
	defer proof.Close()
	observe := func(_ context.Context, r events.StageReport) { fmt.Fprintln(out, r.Line) }
	res, err := client.Push(ctx, ref, g, source, observe, registry.VerifyBeforeTag(proof), registry.MountFrom(src.Context()))
	if err != nil {
		if failure.As(err).Stage == events.StageVerify {
			err = fmt.Errorf("%s arrived, but its proof failed, so nothing is tagged: %w", byDigest, err)
		}
		return &exitCodeError{code: 2, err: err}
	}
	for _, c := range proof.Report.Checks {
		fmt.Fprintln(out, c)
	}
	fmt.Fprintf(out, "copied %s to %s (%d uploaded, %d mounted, %d existing, %d referrers), verified%s\n",
		src, byDigest, res.Uploaded, res.Mounted, res.Existing, len(g.Referrers), tagged(tag))
	return nil
}

// destination reads DST[:TAG]: the repository, and the tag when one is
// given (none is not "latest": nothing is tagged).
func destination(arg string) (name.Repository, string, error) {
	if t, err := name.NewTag(arg, name.StrictValidation); err == nil {
		return t.Context(), t.TagStr(), nil
	}
	repo, err := name.NewRepository(arg)
	if err != nil {
		return name.Repository{}, "", fmt.Errorf("destination %q: want REGISTRY/REPOSITORY[:TAG]: %w", arg, err)
	}
	return repo, "", nil
}

func tagged(tag string) string {
	if tag == "" {
		return ""
	}
	return ", tagged " + tag
}
