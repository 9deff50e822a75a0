package sign

import (
	"cmp"
	"os"
	"strings"
)

// SignerFromEnv loads the signing key DIGESTLINE_SIGNING_KEY names (a
// path), opened with DIGESTLINE_SIGNING_KEY_PASSWORD or, as cosign reads
// it, COSIGN_PASSWORD when the key is encrypted. No key set is no signer
// (nil, nil).
func SignerFromEnv() (Signer, error) {
	path := os.Getenv("DIGESTLINE_SIGNING_KEY")
	if path == "" {
		return nil, nil
	}
	return LoadSigner(path, PasswordFromEnv())
}

// PasswordFromEnv is an encrypted signing key's password:
// DIGESTLINE_SIGNING_KEY_PASSWORD, or COSIGN_PASSWORD as cosign reads it.
func PasswordFromEnv() []byte {
	return []byte(cmp.Or(os.Getenv("DIGESTLINE_SIGNING_KEY_PASSWORD"), os.Getenv("COSIGN_PASSWORD")))
}

// VerifiersFromEnv loads the trusted public keys DIGESTLINE_TRUSTED_KEYS
// lists (paths, comma-separated: several at once while a key is rotated).
func VerifiersFromEnv() ([]Verifier, error) {
	return LoadVerifiers(strings.Split(os.Getenv("DIGESTLINE_TRUSTED_KEYS"), ","))
}

// LoadVerifiers loads each public key file of paths (blank ones skipped).
func LoadVerifiers(paths []string) ([]Verifier, error) {
	var out []Verifier
	for _, p := range paths {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		v, err := LoadVerifier(p)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}
