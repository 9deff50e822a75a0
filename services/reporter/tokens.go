package reporter

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/digestline/digestline/pkg/service"
)

// TokensFromEnv reads the API's bearer tokens: DIGESTLINE_API_TOKENS as
// comma-separated name=token pairs (the name is what records store as who
// asked), and DIGESTLINE_API_TOKEN as one more token named "api".
func TokensFromEnv() (map[string]string, error) {
	tokens := map[string]string{}
	if t := os.Getenv("DIGESTLINE_API_TOKEN"); t != "" {
		tokens["api"] = t
	}
	for _, pair := range strings.Split(os.Getenv("DIGESTLINE_API_TOKENS"), ",") {
		if pair = strings.TrimSpace(pair); pair == "" {
			continue
		}
		name, token, ok := strings.Cut(pair, "=")
		if !ok || name == "" || token == "" {
			return nil, errors.New("DIGESTLINE_API_TOKENS: want name=token pairs separated by commas")
		}
		tokens[name] = token
	}
	return tokens, nil
}

// TokenFile returns the token kept in path, creating a random one (readable
// by its owner only) the first time: a local `digestline dev` is protected
// without anyone choosing a secret, and the CLI on the same machine reads it.
func TokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) >= 16 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("API token file: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	token := hex.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("API token file: %w", err)
	}
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("API token file: %w", err)
	}
	return token, nil
}

// ParseRequiredReferrers reads "env=type,type;env=type" into the
// RequiredReferrers map.
func ParseRequiredReferrers(s string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, part := range strings.Split(s, ";") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		env, types, ok := strings.Cut(part, "=")
		if !ok || env == "" || types == "" {
			return nil, fmt.Errorf("required referrers %q: want env=artifact/type[,type…][;env=…]", part)
		}
		for _, t := range strings.Split(types, ",") {
			out[env] = append(out[env], strings.TrimSpace(t))
		}
	}
	return out, nil
}

// authorize returns the name of the token the request bears. A request
// with no token, or one this reporter does not accept, is answered 401
// saying which (RFC 6750: a wrong token is "invalid_token"), and ok is
// false. Every token is compared, in constant time over equal-length
// hashes, so neither the answer's timing nor the token's length gives a
// token away.
func (r *reporter) authorize(w http.ResponseWriter, req *http.Request) (who string, ok bool) {
	given, bearer := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	challenge, msg := `Bearer realm="digestline"`, ""
	switch {
	case len(r.cfg.Tokens) == 0:
		msg = "this reporter accepts no writes: start it with DIGESTLINE_API_TOKEN set"
	case !bearer || given == "":
		msg = "no bearer token: set DIGESTLINE_API_TOKEN, or point --token-file at the token (digestline dev writes one to <data>/api-token)"
	default:
		for name, token := range r.cfg.Tokens { // every token is compared, whichever matches
			if service.SameSecret(given, token) {
				who, ok = name, true
			}
		}
		if ok {
			return who, true
		}
		challenge += `, error="invalid_token"`
		msg = "the bearer token is not one this reporter accepts: check DIGESTLINE_API_TOKEN or --token-file (a token from another stack's data directory?)"
	}
	w.Header().Set("WWW-Authenticate", challenge)
	service.WriteError(w, http.StatusUnauthorized, msg)
	return "", false
}
