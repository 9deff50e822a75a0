package registry

import (
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
)

// CredentialsFromEnv returns the options the environment asks for: WithAuth
// for DIGESTLINE_REGISTRY_USERNAME and DIGESTLINE_REGISTRY_PASSWORD when both
// are set (otherwise the docker config keychain applies), and WithInsecure
// for the comma-separated hosts of DIGESTLINE_INSECURE_REGISTRIES.
func CredentialsFromEnv() []Option {
	var opts []Option
	if user, pass := os.Getenv("DIGESTLINE_REGISTRY_USERNAME"), os.Getenv("DIGESTLINE_REGISTRY_PASSWORD"); user != "" && pass != "" {
		opts = append(opts, WithAuth(&authn.Basic{Username: user, Password: pass}))
	}
	var hosts []string
	for _, h := range strings.Split(os.Getenv("DIGESTLINE_INSECURE_REGISTRIES"), ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) > 0 {
		opts = append(opts, WithInsecure(hosts...))
	}
	return opts
}
