// Package stack is where the CLI finds the digestline stack it talks to.
// `digestline dev` writes a context (the bus, the API, the API token's
// file, the registry) and every command reads it when no flag or
// variable says otherwise, as kubectl reads its current context: after
// `digestline dev`, ship, promote, records and run need no flags.
package stack

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Context is a running stack, as `digestline dev` describes it.
type Context struct {
	NATSURL    string `json:"natsUrl"`
	APIURL     string `json:"apiUrl"`
	TokenFile  string `json:"tokenFile,omitempty"`
	Registry   string `json:"registry,omitempty"`
	WebhookURL string `json:"webhookUrl,omitempty"`
	DataDir    string `json:"dataDir,omitempty"`
}

// EnvPath names the variable that points at a context file other than
// the current one (e.g. to talk to one of two stacks).
const EnvPath = "DIGESTLINE_CONTEXT"

// Path is the context file: $DIGESTLINE_CONTEXT, else digestline/context.json
// under the user's configuration directory ($XDG_CONFIG_HOME, ~/.config).
func Path() (string, error) {
	if p := os.Getenv(EnvPath); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the context file: %w (set %s)", err, EnvPath)
	}
	return filepath.Join(dir, "digestline", "context.json"), nil
}

// Load reads the current context; found is false when there is none
// (no `digestline dev` has run as this user).
func Load() (c Context, found bool, err error) {
	path, err := Path()
	if err != nil {
		return c, false, err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("read the context: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, false, fmt.Errorf("context %s: %w (remove it, or run digestline dev again to rewrite it)", path, err)
	}
	return c, true, nil
}

// Save makes c the current context and returns the file it wrote. The
// file is replaced whole, so a command never reads half of one.
func Save(c Context) (string, error) {
	path, err := Path()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("write the context: %w", err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".context-*.json")
	if err != nil {
		return "", fmt.Errorf("write the context: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		_ = tmp.Close()
		return "", fmt.Errorf("write the context: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("write the context: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("write the context: %w", err)
	}
	return path, nil
}

// APIBase turns what --api and DIGESTLINE_API_URL accept (a URL, or the
// host:port --api-addr takes) into a base URL without a trailing slash.
func APIBase(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("empty API address: want http://host:port or host:port")
	}
	if strings.HasPrefix(s, ":") { // --api-addr :8080 listens on every address, this one included
		s = "127.0.0.1" + s
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "", fmt.Errorf("API address: %w", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("API address %q: want an http or https URL, or host:port", s)
	case u.Hostname() == "":
		return "", fmt.Errorf("API address %q has no host: want http://host:port or host:port", s)
	}
	return strings.TrimSuffix(s, "/"), nil
}
