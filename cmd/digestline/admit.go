package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/spf13/cobra"
)

// admitOptions are admit's flags.
type admitOptions struct {
	api             apiOptions
	to              string
	keys            []string
	builder, source string
	timeout         time.Duration
	noWait          bool
}

func newAdmitCommand() *cobra.Command {
	o := &admitOptions{api: apiOptions{write: true}}
	cmd := &cobra.Command{
		Use:   "admit REGISTRY/REPOSITORY@sha256:...|REGISTRY/REPOSITORY:TAG [--to ENV] [--key cosign.pub]... [--builder ID] [--source URL]",
		Short: "Admit an image another tool built and pushed: prove its bytes and signatures, then promote it as a build",
		Long: "admit asks the reporter (POST /v1/admissions, with the bearer token in DIGESTLINE_API_TOKEN or --token-file) to\n" +
			"take an image digestline did not build into the pipeline: the verifier pulls it by digest and proves every byte,\n" +
			"and, with --key, that it is signed by one of the keys (a cosign signature: through the referrers API, the fallback\n" +
			"tag or cosign's .sig tag) and that every signature and attestation attached is one of theirs. With --builder or\n" +
			"--source it also requires a SLSA provenance, signed by one of the keys, from that builder and source repository.\n" +
			"Then the image promotes to --to (default: the first environment) through the gates, as a build does.\n" +
			"A registry's notifications admit images without a person: docs/admission.md. Exit status 2 means rejected or failed.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), args[0], cmd.OutOrStdout())
		},
	}
	fs := cmd.Flags()
	o.api.addFlags(fs)
	fs.StringVar(&o.to, "to", "", "environment to promote to (default: the first)")
	fs.StringSliceVar(&o.keys, "key", nil, "public key (cosign.pub) the image must be signed by; repeat for several (default: the verifier's DIGESTLINE_TRUSTED_KEYS)")
	fs.StringVar(&o.builder, "builder", "", "require a SLSA provenance from this builder id")
	fs.StringVar(&o.source, "source", "", "require a SLSA provenance built from this source repository (https://github.com/org/app)")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up following after this long (the run goes on)")
	fs.BoolVar(&o.noWait, "no-wait", false, "return once the request is accepted")
	return cmd
}

// run admits target and follows the run it starts.
func (o *admitOptions) run(ctx context.Context, target string, out io.Writer) error {
	keys, err := sign.ReadPublicKeys(o.keys)
	if err != nil {
		return fmt.Errorf("--key: %w", err)
	}
	body := api.AdmitRequest{To: o.to, Keys: keys}
	if o.builder != "" || o.source != "" {
		if len(body.Keys) == 0 {
			return fmt.Errorf("--builder and --source need --key: the provenance must be signed by a key you trust")
		}
		body.Provenance = &events.ProvenanceRule{Builder: o.builder, Source: o.source}
	}
	body.Ref = target
	if !strings.Contains(target, "@") {
		ref, err := promotedDigest(ctx, target, out)
		if err != nil {
			return err
		}
		body.Ref = target + "@" + ref.DigestStr()
	}
	if _, err := body.Request(); err != nil {
		return err
	}
	c, err := o.api.client()
	if err != nil {
		return err
	}
	if err := c.requireToken(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	var accepted api.PromoteAccepted
	if _, err := c.do(ctx, http.MethodPost, "/v1/admissions", body, &accepted); err != nil {
		return err
	}
	fmt.Fprintf(out, "run %s: admitting %s\n  page %s/runs/%s\n", accepted.RunID, body.Ref, c.base, accepted.RunID)
	if o.noWait {
		return nil
	}
	return followRun(ctx, c, accepted.RunID, out)
}
