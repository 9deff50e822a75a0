package registry

import (
	"os"

	"github.com/google/go-containerregistry/pkg/authn"
)

// CredentialsFromEnv returns WithAuth for DIGESTLINE_REGISTRY_USERNAME and
// DIGESTLINE_REGISTRY_PASSWORD when both are set, and nothing otherwise (the
// docker config keychain then applies).
func CredentialsFromEnv() []Option {
	user, pass := os.Getenv("DIGESTLINE_REGISTRY_USERNAME"), os.Getenv("DIGESTLINE_REGISTRY_PASSWORD")
	if user == "" || pass == "" {
		return nil
	}
	return []Option{WithAuth(&authn.Basic{Username: user, Password: pass})}
}
