package registry

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
)

// OptionsFromEnv returns the options the environment asks for: WithAuth
// for DIGESTLINE_REGISTRY_USERNAME and DIGESTLINE_REGISTRY_PASSWORD when both
// are set (otherwise the docker config keychain applies), WithInsecure for
// the comma-separated hosts of DIGESTLINE_INSECURE_REGISTRIES, and
// WithTimeout for DIGESTLINE_REGISTRY_TIMEOUT (a duration such as 30s),
// WithWait for DIGESTLINE_REGISTRY_WAIT (how long a stage keeps retrying),
// WithRateLimit for DIGESTLINE_REGISTRY_RPS (requests per second to each
// registry, bursts of as many) and WithUploadLimit for
// DIGESTLINE_REGISTRY_UPLOADS (blob uploads at once to each registry).
func OptionsFromEnv() ([]Option, error) {
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
	if s := os.Getenv("DIGESTLINE_REGISTRY_TIMEOUT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("DIGESTLINE_REGISTRY_TIMEOUT %q: want a positive duration, e.g. 60s", s)
		}
		opts = append(opts, WithTimeout(d))
	}
	if s := os.Getenv("DIGESTLINE_REGISTRY_WAIT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("DIGESTLINE_REGISTRY_WAIT %q: want a positive duration, e.g. 2m", s)
		}
		opts = append(opts, WithWait(d))
	}
	if s := os.Getenv("DIGESTLINE_REGISTRY_RPS"); s != "" {
		rps, err := strconv.ParseFloat(s, 64)
		if err != nil || rps <= 0 {
			return nil, fmt.Errorf("DIGESTLINE_REGISTRY_RPS %q: want requests per second, a positive number such as 20", s)
		}
		opts = append(opts, WithRateLimit(rps, max(int(rps), 1)))
	}
	if s := os.Getenv("DIGESTLINE_REGISTRY_UPLOADS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("DIGESTLINE_REGISTRY_UPLOADS %q: want a positive number of uploads at once, such as 4", s)
		}
		opts = append(opts, WithUploadLimit(n))
	}
	return opts, nil
}
