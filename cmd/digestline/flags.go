package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/registry/transport"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/pflag"
)

// specFlags registers the image spec flags shared by build and ship. Flags
// left unset keep what the source's digestline.yaml says.
func specFlags(fs *pflag.FlagSet) func() (events.BuildSpec, error) {
	var (
		spec                events.BuildSpec
		labels, annotations []string
	)
	fs.StringSliceVar(&spec.Entrypoint, "entrypoint", nil, "image entrypoint (comma-separated argv)")
	fs.StringSliceVar(&spec.Cmd, "cmd", nil, "image command (comma-separated argv)")
	fs.StringArrayVar(&spec.Env, "env-var", nil, "KEY=VALUE environment of the image (repeatable)")
	fs.StringVar(&spec.WorkingDir, "workdir", "", "image working directory")
	fs.StringVar(&spec.Platform, "platform", "", "image platform os/arch[/variant] (default linux/amd64)")
	fs.StringVar(&spec.User, "user", "", "user the image runs as, e.g. 65532:65532")
	fs.StringSliceVar(&spec.Ports, "port", nil, "exposed ports, e.g. 8080/tcp (comma-separated)")
	fs.StringArrayVar(&spec.Ignore, "ignore", nil, "glob of files to leave out (repeatable), added to digestline.yaml's and .digestlineignore's")
	fs.StringArrayVar(&annotations, "annotation", nil, "KEY=VALUE manifest annotation (repeatable)")
	fs.StringArrayVar(&labels, "label", nil, "KEY=VALUE image label (repeatable)")
	fs.StringVar(&spec.Compression, "compression", "", "layer compression: gzip (default, parallel), zstd or none")
	fs.IntVar(&spec.CompressionLevel, "compression-level", 0, "gzip 1-9 or zstd 1-4; 0 means the default")
	fs.StringVar(&spec.MediaTypes, "media-types", "", "oci (default), or docker for Docker v2.2 manifests")
	fs.StringVar(&spec.Base, "base", "", "base image: scratch (default), oci:PATH, or registry/repository:tag|@digest")
	fs.BoolVar(&spec.SBOM, "sbom", false, "attach SBOMs as referrers, in both formats scanners read (SPDX 2.3 JSON and CycloneDX 1.5 JSON): each lists every file with its SHA-256, and the packages found in them with their purls (Go modules, a Go binary's own main module with its version; Debian, Python and npm packages)")
	return func() (events.BuildSpec, error) {
		for _, e := range spec.Env {
			if !strings.Contains(e, "=") {
				return spec, fmt.Errorf("--env-var %q: want KEY=VALUE", e)
			}
		}
		var err error
		if spec.Labels, err = keyValues("--label", labels); err != nil {
			return spec, err
		}
		spec.Annotations, err = keyValues("--annotation", annotations)
		return spec, err
	}
}

// tagGuardFlags registers --tag-policy and --expect (push and ship).
func tagGuardFlags(fs *pflag.FlagSet) *events.TagGuard {
	var g events.TagGuard
	fs.StringVar(&g.Policy, "tag-policy", "", "moving a tag that points elsewhere: fail (default; refuses when it is not at --expect), force, or if-absent")
	fs.StringVar(&g.Expect, "expect", "", "digest the tag must point at before the push (with --tag-policy fail)")
	return &g
}

// keyValues parses repeated KEY=VALUE flags; nil when there are none.
func keyValues(flag string, pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q: want KEY=VALUE", flag, p)
		}
		out[k] = v
	}
	return out, nil
}

// The CLI's registry bounds: a person waits at a terminal, so a registry
// that does not answer is told of within seconds and given up on within
// two minutes (DIGESTLINE_REGISTRY_TIMEOUT and DIGESTLINE_REGISTRY_WAIT
// change them); the services keep registry.DefaultTimeout and their
// retries.
const (
	cliRegistryTimeout = 20 * time.Second
	cliRegistryWait    = 2 * time.Minute
)

// registryClient is the CLI's registry client: credentials from
// DIGESTLINE_REGISTRY_USERNAME/PASSWORD or the docker config, the other
// DIGESTLINE_ registry settings (registry.OptionsFromEnv), the CLI's
// bounds, and a line on standard error while a registry keeps a request
// waiting.
func registryClient(opts ...registry.Option) (*registry.Client, error) {
	env, err := registry.OptionsFromEnv()
	if err != nil {
		return nil, err
	}
	cli := []registry.Option{registry.WithTimeout(cliRegistryTimeout), registry.WithWait(cliRegistryWait), registry.WithWaitNotice(noticeWait)}
	return registry.New(append(append(cli, env...), opts...)...), nil
}

// noticeWait tells the person at the terminal what a registry keeps them
// waiting on.
func noticeWait(w transport.Wait) {
	stage := ""
	if w.Stage != "" {
		stage = " in the " + w.Stage + " stage"
	}
	fmt.Fprintf(os.Stderr, "digestline: waiting on %s%s (%s %s), %s so far\n", w.Host, stage, w.Method, w.Path, w.Waited.Round(time.Second))
}

// openRepo opens repo for reading with the CLI's registry client.
func openRepo(ctx context.Context, repo name.Repository) (*registry.Repo, error) {
	c, err := registryClient()
	if err != nil {
		return nil, err
	}
	return c.Open(ctx, repo, false)
}

// digestRef is target as a digest reference, which the command (verb)
// takes: a tag moves, so reads and writes that prove or pin bytes name
// them by digest. A tag is refused with the command that tells its digest.
func digestRef(verb, target string) (name.Digest, error) {
	ref, err := name.NewDigest(target)
	if err == nil {
		return ref, nil
	}
	if _, terr := name.NewTag(target); terr == nil {
		return name.Digest{}, fmt.Errorf("%s takes a digest reference, REPOSITORY@sha256:<hex>, not the tag %s: `digestline inspect %s` prints the digest it points at now",
			verb, target, target)
	}
	return name.Digest{}, fmt.Errorf("%s takes a digest reference, REPOSITORY@sha256:<hex>: %w", verb, err)
}

// flagTime reads a flag that names a time: an RFC 3339 time, or a
// duration that at turns into one (from now, after or before it).
func flagTime(flag, s string, at func(time.Duration) time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return at(d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %q: want an RFC 3339 time (2026-12-28T09:00:00+01:00) or a duration (36h)", flag, s)
	}
	return t, nil
}

// timeRange sets q's time range from --since and --until: each an RFC
// 3339 time, or a duration before now ("" leaves its end open).
func timeRange(q *api.ListQuery, since, until string, now time.Time) error {
	ago := func(d time.Duration) time.Time { return now.Add(-d.Abs()) }
	var err error
	if since != "" {
		if q.Since, err = flagTime("--since", since, ago); err != nil {
			return err
		}
	}
	if until != "" {
		q.Until, err = flagTime("--until", until, ago)
	}
	return err
}
