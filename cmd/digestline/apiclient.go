package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// apiClient talks to the reporter's HTTP API.
type apiClient struct {
	base  string
	token string
	// tokenFrom says where the token came from, for the answer to a
	// token the reporter refuses.
	tokenFrom string
	http      *http.Client
}

// apiOptions are the flags of a command that talks to the reporter's API:
// --api, and for writes --token-file. Unset, they come from the
// environment or the context digestline dev wrote (stack.go).
type apiOptions struct {
	base, tokenFile string
	write           bool
}

// addFlags registers --api (and, when o.write, --token-file).
func (o *apiOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.base, "api", "", apiHelp)
	if o.write {
		fs.StringVar(&o.tokenFile, "token-file", "",
			"file with the API token, read when DIGESTLINE_API_TOKEN is unset (default: DIGESTLINE_API_TOKEN_FILE, else the one digestline dev wrote)")
	}
}

// client is the API client the flags, the environment and the context
// describe.
func (o *apiOptions) client() (*apiClient, error) {
	base, _, err := apiURL(o.base)
	if err != nil {
		return nil, fmt.Errorf("--api: %w", err)
	}
	c := &apiClient{base: base, http: &http.Client{Timeout: 30 * time.Second}}
	if !o.write {
		return c, nil
	}
	if c.token = os.Getenv("DIGESTLINE_API_TOKEN"); c.token != "" {
		c.tokenFrom = "DIGESTLINE_API_TOKEN"
		return c, nil
	}
	file, err := tokenFile(o.tokenFile)
	if err != nil {
		return nil, err
	}
	c.tokenFrom = file
	b, err := os.ReadFile(file)
	switch {
	case err == nil:
		c.token = strings.TrimSpace(string(b))
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("read the API token: %w", err)
	}
	return c, nil
}

// requireToken says what to do when a write has no token to send.
// writer is the client of a write: one with a token, or an error saying
// where to find one.
func (o *apiOptions) writer() (*apiClient, error) {
	c, err := o.client()
	if err != nil {
		return nil, err
	}
	return c, c.requireToken()
}

func (c *apiClient) requireToken() error {
	if c.token == "" {
		return fmt.Errorf("no API token: set DIGESTLINE_API_TOKEN, or --token-file (nothing at %s; digestline dev writes one to <data>/api-token)", c.tokenFrom)
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
			Hint  string `json:"hint"`
		}
		_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&e)
		if e.Hint != "" {
			e.Error += "\nhint: " + e.Hint
		}
		if resp.StatusCode == http.StatusUnauthorized && c.token != "" {
			return resp.StatusCode, fmt.Errorf("the reporter at %s refused the API token from %s: %s", c.base, c.tokenFrom, cmp.Or(e.Error, "no details"))
		}
		return resp.StatusCode, fmt.Errorf("reporter API: %s: %s", resp.Status, cmp.Or(e.Error, "no details"))
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("reporter API answer: %w", err)
		}
	}
	return resp.StatusCode, nil
}

// apiOutage is a follower's view of the reporter API while it waits for
// runs: an answer of 5xx, or none once the API answered before (a
// restart), is an outage to wait out, said once; no answer from an API
// that never answered is a wrong --api, an error.
type apiOutage struct {
	answered, said bool
}

// wait reports whether a request that failed with err (answered code; 0:
// no answer) is an outage to wait out, saying so on notes the first time
// in a row. A request that did not fail ends the outage.
func (o *apiOutage) wait(code int, err error, notes io.Writer) bool {
	if err == nil {
		o.answered, o.said = true, false
		return false
	}
	if code < http.StatusInternalServerError && (code != 0 || !o.answered) {
		return false
	}
	if !o.said {
		fmt.Fprintf(notes, "[WAIT] %v: asking again until --timeout\n", err)
		o.said = true
	}
	return true
}
