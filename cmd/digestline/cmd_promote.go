package main

import (
	"bytes"
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
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/digestline/digestline/pkg/runs"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/services/reporter"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"
)

// apiClient talks to the reporter's HTTP API.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

// apiFlags adds --api (and, for writes, --token-file) and returns the
// client they describe.
func apiFlags(cmd *cobra.Command, write bool) func() (*apiClient, error) {
	base := cmd.Flags().String("api", service.Env("API_URL", "http://127.0.0.1:8080"), "reporter API base URL (DIGESTLINE_API_URL)")
	var tokenFile *string
	if write {
		tokenFile = cmd.Flags().String("token-file", filepath.Join(service.Env("DATA", filepath.Join(".digestline", "dev")), "api-token"),
			"file with the API token, read when DIGESTLINE_API_TOKEN is unset (digestline dev writes one)")
	}
	return func() (*apiClient, error) {
		if _, err := url.Parse(*base); err != nil {
			return nil, fmt.Errorf("--api %q: %w", *base, err)
		}
		c := &apiClient{base: strings.TrimSuffix(*base, "/"), http: &http.Client{Timeout: 30 * time.Second}}
		if write {
			c.token = os.Getenv("DIGESTLINE_API_TOKEN")
			if c.token == "" {
				if b, err := os.ReadFile(*tokenFile); err == nil {
					c.token = strings.TrimSpace(string(b))
				}
			}
		}
		return c, nil
	}
}

// requireToken says what to do when a write has no token to send.
func (c *apiClient) requireToken() error {
	if c.token == "" {
		return errors.New("no API token: set DIGESTLINE_API_TOKEN (or --token-file; digestline dev writes one to .digestline/dev/api-token)")
	}
	return nil
}

// do sends a request and decodes a JSON answer into out; an error answer
// becomes an error carrying the API's message.
func (c *apiClient) do(ctx context.Context, method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("reporter API at %s: %w (is digestline dev or the reporter running? see --api)", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
		return resp.StatusCode, fmt.Errorf("reporter API: %s: %s", resp.Status, cmp.Or(e.Error, "no details"))
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("reporter API answer: %w", err)
		}
	}
	return resp.StatusCode, nil
}

func newPromoteCommand() *cobra.Command {
	var (
		to             string
		timeout        time.Duration
		noWait, dryRun bool
	)
	cmd := &cobra.Command{
		Use:   "promote REPOSITORY@sha256:... --to ENV [--dry-run]",
		Short: "Promote a verified digest to an environment through the gates, and follow it until it is promoted or rejected",
		Long: "promote asks the reporter (POST /v1/promotions, with the bearer token in DIGESTLINE_API_TOKEN or --token-file)\n" +
			"to promote the digest. The gates check that it was verified, is promoted in the previous environment (or was in\n" +
			"this one: a rollback), that the environment's tag has not drifted and that required referrers are attached;\n" +
			"then the environment's tag moves, the digest is verified again and recorded. Exit status 2 means rejected or failed.",
		Args: cobra.ExactArgs(1),
	}
	api := apiFlags(cmd, true)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		ref, err := name.NewDigest(args[0])
		if err != nil {
			return fmt.Errorf("promote by digest, REPOSITORY@sha256:<hex>: %w", err)
		}
		c, err := api()
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
		defer cancel()
		if dryRun {
			return showPolicy(ctx, c, ref, to, cmd.OutOrStdout())
		}
		if err := c.requireToken(); err != nil {
			return err
		}
		var accepted reporter.PromoteAccepted
		if _, err := c.do(ctx, http.MethodPost, "/v1/promotions", reporter.PromoteRequest{Ref: ref.String(), To: to}, &accepted); err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		fmt.Fprintf(out, "run %s: promoting %s to %s\n", accepted.RunID, ref, to)
		if noWait {
			return nil
		}
		return followRun(ctx, c, accepted.RunID, out)
	}
	cmd.Flags().StringVar(&to, "to", "", "environment to promote to (required)")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "give up following after this long (the promotion goes on)")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the request is accepted")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show each gate and policy clause a promotion would meet now, with its values, and promote nothing (exit status 2: it would be rejected)")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

// showPolicy prints what a promotion of ref to env would meet now
// (GET /v1/policy/{env}); a promotion that would be rejected exits 2.
func showPolicy(ctx context.Context, c *apiClient, ref name.Digest, env string, out io.Writer) error {
	var rep reporter.PolicyReport
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

func newApproveCommand() *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "approve REPOSITORY@sha256:... --to ENV",
		Short: "Record your approval (as the API token's name) of a digest for an environment, which policies can require",
		Args:  cobra.ExactArgs(1),
	}
	api := apiFlags(cmd, true)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		ref, err := name.NewDigest(args[0])
		if err != nil {
			return fmt.Errorf("approve a digest, REPOSITORY@sha256:<hex>: %w", err)
		}
		c, err := api()
		if err != nil {
			return err
		}
		if err := c.requireToken(); err != nil {
			return err
		}
		var rec reporter.ApprovalRecord
		if _, err := c.do(cmd.Context(), http.MethodPost, "/v1/approvals", reporter.ApproveRequest{Ref: ref.String(), To: to}, &rec); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "approved %s for %s by %s at %s\n", ref, rec.Environment, rec.By, rec.At.Format(time.RFC3339))
		return nil
	}
	cmd.Flags().StringVar(&to, "to", "", "environment the approval is for (required)")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

// followRun prints a run's events from the API as they are stored,
// until one ends the run; a run that ends without promotion exits 2.
func followRun(ctx context.Context, c *apiClient, runID string, out io.Writer) error {
	var run runs.Run
	seen := 0
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var raw []json.RawMessage
		if _, err := c.do(ctx, http.MethodGet, "/v1/runs/"+runID, nil, &raw); err != nil {
			return err
		}
		for ; seen < len(raw) && !run.Done(); seen++ {
			if ev, name, err := events.Parse(raw[seen]); err == nil {
				for _, line := range run.Add(ev, name) {
					fmt.Fprintln(out, line)
				}
			}
		}
		if run.Err != nil {
			return &exitCodeError{code: 2, err: run.Err}
		}
		if run.Done() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("run %s: %w (it goes on: GET /v1/runs/%s)", runID, ctx.Err(), runID)
		case <-tick.C:
		}
	}
}

func newRecordsCommand() *cobra.Command {
	var (
		env, repo       string
		history, asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "records",
		Short: "List what is promoted where (or, with --history, every promotion and rejection)",
		Args:  cobra.NoArgs,
	}
	api := apiFlags(cmd, false)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := api()
		if err != nil {
			return err
		}
		q := url.Values{}
		if env != "" {
			q.Set("env", env)
		}
		if repo != "" {
			q.Set("repo", repo)
		}
		path := "/v1/promotions"
		if history {
			path = "/v1/history"
		}
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		out := cmd.OutOrStdout()
		if history {
			var hist []reporter.HistoryEntry
			if _, err := c.do(cmd.Context(), http.MethodGet, path, nil, &hist); err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(out).Encode(hist)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tKIND\tENV\tREPOSITORY\tDIGEST\tBY\tDETAIL")
			for _, h := range hist {
				switch {
				case h.Promotion != nil:
					p := h.Promotion
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\tprevious %s\n", h.At.Format(time.RFC3339), h.Kind, p.Environment, p.Repository, short(p.Digest), p.RequestedBy, cmp.Or(short(p.PreviousDigest), "none"))
				case h.Rejection != nil:
					r := h.Rejection
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\tgate %s: %s\n", h.At.Format(time.RFC3339), h.Kind, r.Environment, r.Repository, short(r.Digest), r.RequestedBy, r.Gate, r.Reason)
				}
			}
			return tw.Flush()
		}
		var recs []events.Promotion
		if _, err := c.do(cmd.Context(), http.MethodGet, path, nil, &recs); err != nil {
			return err
		}
		if asJSON {
			return json.NewEncoder(out).Encode(recs)
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ENV\tREPOSITORY\tDIGEST\tTAG\tPROMOTED\tPREVIOUS\tBY")
		for _, p := range recs {
			tag := p.Tag
			if p.Location != "" { // the environment lives in another repository
				tag = p.Location + ":" + p.Tag
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Environment, p.Repository, p.Digest, tag, p.PromotedAt.Format(time.RFC3339), cmp.Or(short(p.PreviousDigest), "none"), p.RequestedBy)
		}
		return tw.Flush()
	}
	cmd.Flags().StringVar(&env, "env", "", "only this environment")
	cmd.Flags().StringVar(&repo, "repo", "", "only this repository (registry/path)")
	cmd.Flags().BoolVar(&history, "history", false, "every promotion and rejection, oldest first")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// short abbreviates a digest to sha256:0123456789ab ("" stays "").
func short(d string) string {
	if alg, hex, ok := strings.Cut(d, ":"); ok && len(hex) > 12 {
		return alg + ":" + hex[:12]
	}
	return d
}
