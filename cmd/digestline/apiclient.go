package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/digestline/digestline/pkg/service"
	"github.com/spf13/pflag"
)

// apiClient talks to the reporter's HTTP API.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

// apiOptions are the flags of a command that talks to the reporter's API:
// --api, and for writes --token-file.
type apiOptions struct {
	base, tokenFile string
	write           bool
}

// addFlags registers --api (and, when o.write, --token-file).
func (o *apiOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.base, "api", service.Env("API_URL", "http://127.0.0.1:8080"), "reporter API base URL (DIGESTLINE_API_URL)")
	if o.write {
		fs.StringVar(&o.tokenFile, "token-file", filepath.Join(service.Env("DATA", filepath.Join(".digestline", "dev")), "api-token"),
			"file with the API token, read when DIGESTLINE_API_TOKEN is unset (digestline dev writes one)")
	}
}

// client is the API client the flags describe.
func (o *apiOptions) client() (*apiClient, error) {
	if _, err := url.Parse(o.base); err != nil {
		return nil, fmt.Errorf("--api %q: %w", o.base, err)
	}
	c := &apiClient{base: strings.TrimSuffix(o.base, "/"), http: &http.Client{Timeout: 30 * time.Second}}
	if o.write {
		c.token = os.Getenv("DIGESTLINE_API_TOKEN")
		if c.token == "" {
			if b, err := os.ReadFile(o.tokenFile); err == nil {
				c.token = strings.TrimSpace(string(b))
			}
		}
	}
	return c, nil
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
