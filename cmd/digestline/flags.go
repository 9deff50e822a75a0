package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/spf13/pflag"
)

// env returns DIGESTLINE_<key> or def, for flag defaults.
func env(key, def string) string {
	if v := os.Getenv("DIGESTLINE_" + key); v != "" {
		return v
	}
	return def
}

// specFlags registers the image spec flags shared by build and ship.
func specFlags(fs *pflag.FlagSet) func() (events.BuildSpec, error) {
	var (
		spec   events.BuildSpec
		labels []string
	)
	fs.StringSliceVar(&spec.Entrypoint, "entrypoint", nil, "image entrypoint (comma-separated argv)")
	fs.StringSliceVar(&spec.Cmd, "cmd", nil, "image command (comma-separated argv)")
	fs.StringArrayVar(&spec.Env, "env-var", nil, "KEY=VALUE environment of the image (repeatable)")
	fs.StringVar(&spec.WorkingDir, "workdir", "", "image working directory")
	fs.StringVar(&spec.Platform, "platform", "linux/amd64", "image platform os/arch[/variant]")
	fs.StringArrayVar(&labels, "label", nil, "KEY=VALUE image label (repeatable)")
	fs.StringVar(&spec.Compression, "compression", "gzip", "layer compression: gzip (parallel), zstd or none")
	fs.IntVar(&spec.CompressionLevel, "compression-level", 0, "gzip 1-9 or zstd 1-4; 0 means the default")
	fs.StringVar(&spec.MediaTypes, "media-types", "oci", "oci, or docker for Docker v2.2 manifests")
	return func() (events.BuildSpec, error) {
		for _, e := range spec.Env {
			if !strings.Contains(e, "=") {
				return spec, fmt.Errorf("--env-var %q: want KEY=VALUE", e)
			}
		}
		for _, l := range labels {
			k, v, ok := strings.Cut(l, "=")
			if !ok || k == "" {
				return spec, fmt.Errorf("--label %q: want KEY=VALUE", l)
			}
			if spec.Labels == nil {
				spec.Labels = map[string]string{}
			}
			spec.Labels[k] = v
		}
		return spec, nil
	}
}

// registryClient is the CLI's registry client: credentials from
// DIGESTLINE_REGISTRY_USERNAME/PASSWORD or the docker config.
func registryClient() *registry.Client {
	return registry.New(registry.CredentialsFromEnv()...)
}
