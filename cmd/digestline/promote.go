package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"time"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// promoteOptions are promote's flags.
type promoteOptions struct {
	api            apiOptions
	to             string
	release        string
	timeout        time.Duration
	noWait, dryRun bool
}

func newPromoteCommand() *cobra.Command {
	o := &promoteOptions{api: apiOptions{write: true}}
	cmd := &cobra.Command{
		Use:   "promote REPOSITORY@sha256:...|REPOSITORY:TAG --to ENV [--dry-run] | promote --release FILE [--to ENV]",
		Short: "Promote a verified digest to an environment through the gates, and follow it until it is promoted or rejected",
		Long: "promote asks the reporter (POST /v1/promotions, with the bearer token in DIGESTLINE_API_TOKEN or --token-file)\n" +
			"to promote the digest. The gates check that it was verified, is promoted in the previous environment (or was in\n" +
			"this one: a rollback), that the environment's tag has not drifted and that required referrers are attached;\n" +
			"then the environment's tag moves, the digest is verified again and recorded. Exit status 2 means rejected or failed.\n\n" +
			"With --release, a release file names several images tested together (name, to, images: registry/repo@sha256:…),\n" +
			"promoted as one (POST /v1/releases): every gate for every image first, then every tag moves; if one move\n" +
			"fails, the tags moved before it are put back, and the run fails naming the image.",
		Args: func(cmd *cobra.Command, args []string) error {
			if o.release != "" {
				return cobra.NoArgs(cmd, args)
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.release != "" {
				return o.runRelease(cmd.Context(), cmd.OutOrStdout())
			}
			if o.to == "" {
				return errors.New(`required flag "to" not set: the environment to promote to`)
			}
			return o.run(cmd.Context(), args[0], cmd.OutOrStdout())
		},
	}
	fs := cmd.Flags()
	o.api.addFlags(fs)
	fs.StringVar(&o.to, "to", "", "environment to promote to (required, but with --release: the file's to)")
	fs.StringVar(&o.release, "release", "", "a release file (YAML or JSON: name, to, images) to promote as one")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up following after this long (the promotion goes on)")
	fs.BoolVar(&o.noWait, "no-wait", false, "return once the request is accepted")
	fs.BoolVar(&o.dryRun, "dry-run", false, "show each gate and policy clause a promotion would meet now, with its values, and promote nothing (exit status 2: it would be rejected)")
	return cmd
}

// runRelease promotes the images of the release file as one (or, with
// --dry-run, shows what each would meet) and follows the run.
func (o *promoteOptions) runRelease(ctx context.Context, out io.Writer) error {
	b, err := os.ReadFile(o.release)
	if err != nil {
		return err
	}
	var body api.ReleaseRequest
	if err := yaml.UnmarshalStrict(b, &body); err != nil {
		return fmt.Errorf("release file %s: want name, to and images (registry/repo@sha256:…): %w", o.release, err)
	}
	body.To = cmp.Or(o.to, body.To)
	if _, err := body.Request(); err != nil {
		return fmt.Errorf("release file %s: %w", o.release, err)
	}
	c, err := o.api.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if o.dryRun {
		var refused error
		for _, im := range body.Images {
			ref, _ := name.NewDigest(im) // checked by Request
			if err := showPolicy(ctx, c, ref, body.To, out); err != nil {
				if !errors.As(err, new(*exitCodeError)) {
					return err
				}
				refused = cmp.Or(refused, err)
			}
		}
		return refused
	}
	if err := c.requireToken(); err != nil {
		return err
	}
	var accepted api.PromoteAccepted
	if _, err := c.do(ctx, http.MethodPost, "/v1/releases", body, &accepted); err != nil {
		return err
	}
	fmt.Fprintf(out, "run %s: releasing %s (%d images) to %s\n  page %s/runs/%s\n", accepted.RunID, body.Name, len(body.Images), body.To, c.base, accepted.RunID)
	if o.noWait {
		return nil
	}
	return followRun(ctx, c, accepted.RunID, out)
}

// run promotes target (or, with --dry-run, shows what a promotion would
// meet) and follows the run it starts.
func (o *promoteOptions) run(ctx context.Context, target string, out io.Writer) error {
	ref, err := promotedDigest(ctx, target, out)
	if err != nil {
		return err
	}
	c, err := o.api.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if o.dryRun {
		return showPolicy(ctx, c, ref, o.to, out)
	}
	if err := c.requireToken(); err != nil {
		return err
	}
	var accepted api.PromoteAccepted
	if _, err := c.do(ctx, http.MethodPost, "/v1/promotions", api.PromoteRequest{Ref: ref.String(), To: o.to}, &accepted); err != nil {
		return err
	}
	fmt.Fprintf(out, "run %s: promoting %s to %s\n  page %s/runs/%s\n", accepted.RunID, ref, o.to, c.base, accepted.RunID)
	if o.noWait {
		return nil
	}
	return followRun(ctx, c, accepted.RunID, out)
}

// promotedDigest is the digest target names: target itself when it is
// REPOSITORY@sha256:…, else the digest its tag points at now, read from
// the registry and said (a promotion or an admission is always of a
// digest).
func promotedDigest(ctx context.Context, target string, out io.Writer) (name.Digest, error) {
	if d, err := name.NewDigest(target); err == nil {
		return d, nil
	}
	tag, err := name.NewTag(target)
	if err != nil {
		return name.Digest{}, fmt.Errorf("%q: want REPOSITORY@sha256:<hex>, or REPOSITORY:TAG for the digest the tag points at: %w", target, err)
	}
	repo, err := openRepo(ctx, tag.Context())
	if err != nil {
		return name.Digest{}, err
	}
	desc, found, err := repo.HeadManifest(ctx, tag.TagStr())
	if err != nil {
		return name.Digest{}, err
	}
	if !found {
		return name.Digest{}, fmt.Errorf("%s: no such tag (digestline tags %s lists them; or name the digest, REPOSITORY@sha256:<hex>)", tag, tag.Context())
	}
	d := tag.Context().Digest(desc.Digest.String())
	fmt.Fprintf(out, "%s points at %s\n", tag, desc.Digest)
	return d, nil
}

// showPolicy prints what a promotion of ref to env would meet now
// (GET /v1/policy/{env}); a promotion that would be rejected exits 2.
func showPolicy(ctx context.Context, c *apiClient, ref name.Digest, env string, out io.Writer) error {
	var rep api.PolicyReport
	if _, err := c.do(ctx, http.MethodGet, "/v1/policy/"+url.PathEscape(env)+"?ref="+url.QueryEscape(ref.String()), nil, &rep); err != nil {
		return err
	}
	for _, cl := range rep.Clauses {
		status := "pass"
		if !cl.Passed {
			status = "FAIL"
		}
		fmt.Fprintf(out, "[POLICY] %s %s (line %d): %s\n", status, cl.Name, cl.Line, cl.Expr)
		for _, k := range slices.Sorted(maps.Keys(cl.Values)) {
			v, _ := json.Marshal(cl.Values[k])
			if len(v) > 160 { // a statement or a referrer list: the API has it whole
				v = append(v[:160], "…"...)
			}
			fmt.Fprintf(out, "         %s = %s\n", k, v)
		}
		if cl.Error != "" {
			fmt.Fprintf(out, "         error: %s\n", cl.Error)
		}
	}
	if rep.Allowed {
		fmt.Fprintf(out, "%s may be promoted to %s\n", ref, env)
		return nil
	}
	fmt.Fprintf(out, "%s would be rejected at gate %s: %s\nhint: %s\n", ref, rep.Gate, rep.Reason, rep.Hint)
	return &exitCodeError{code: 2, err: fmt.Errorf("a promotion to %s would be rejected at gate %s", env, rep.Gate)}
}

// followRun prints a run's lines from the API as they are stored, until
// one ends the run; a run that ends without promotion exits 2.
func followRun(ctx context.Context, c *apiClient, runID string, out io.Writer) error {
	return pollRun(ctx, c, runID, out, func(_ json.RawMessage, lines []string) {
		for _, line := range lines {
			fmt.Fprintln(out, line)
		}
	})
}

// quietRun is how long a followed run may go without an event before the
// follower asks the reporter why (runs.Run.Waiting).
var quietRun = 15 * time.Second

// pollRun reads a run's events from the API as they are stored and calls
// each with every new one and its lines, until one ends the run; a run
// that ends without promotion exits 2. When the run has had no event for
// quietRun and waits for a service that is not running, it says so on
// notes, once. Its callers reached the API already: a reporter that then
// stops answering for a while is waited for (apiOutage).
func pollRun(ctx context.Context, c *apiClient, runID string, notes io.Writer, each func(raw json.RawMessage, lines []string)) error {
	var run runs.Run
	seen, said := 0, ""
	lastEvent, lastAsked := time.Now(), time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	notEnded := func() error { // whether ctx ended between reads or during one
		return fmt.Errorf("run %s has not ended: %w (it goes on: digestline run follow %s)", runID, ctx.Err(), runID)
	}
	outage := apiOutage{answered: true}
	for {
		var raw []json.RawMessage
		code, err := c.do(ctx, http.MethodGet, "/v1/runs/"+runID, nil, &raw)
		switch {
		case err != nil && ctx.Err() != nil:
			return notEnded()
		case outage.wait(code, err, notes): // asked again at the next tick
		case err != nil:
			return err
		default:
			if seen < len(raw) { // the run went on: a new quiet may need saying again
				lastEvent, said = time.Now(), ""
			}
			for ; seen < len(raw) && !run.Done(); seen++ {
				if ev, name, err := events.Parse(raw[seen]); err == nil {
					each(raw[seen], run.Add(ev, name))
				}
			}
			if run.Err != nil {
				return &exitCodeError{code: 2, err: run.Err}
			}
			if run.Done() {
				return nil
			}
		}
		if err == nil && time.Since(lastEvent) >= quietRun && time.Since(lastAsked) >= quietRun {
			lastAsked = time.Now()
			var summary runs.Run
			if _, err := c.do(ctx, http.MethodGet, "/v1/runs/"+runID+"/summary", nil, &summary); err == nil &&
				summary.Waiting != "" && summary.Waiting != said {
				fmt.Fprintln(notes, runs.WaitLine(time.Since(lastEvent), summary.Waiting))
				said = summary.Waiting
			}
		}
		select {
		case <-ctx.Done():
			return notEnded()
		case <-tick.C:
		}
	}
}
