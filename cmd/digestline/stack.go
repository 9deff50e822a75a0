package main

import (
	"cmp"
	"os"
	"path/filepath"
	"sync"

	"github.com/digestline/digestline/cmd/digestline/internal/stack"
	"github.com/digestline/digestline/pkg/service"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Where the commands find the stack: a flag, else a DIGESTLINE_ variable,
// else the context `digestline dev` wrote (internal/stack), else the
// defaults dev listens on.
const (
	natsHelp = "NATS server URL (default: DIGESTLINE_NATS_URL, else the context digestline dev wrote, else " + service.DefaultNATSURL + ")"
	apiHelp  = "reporter API, a URL or host:port (default: DIGESTLINE_API_URL, else the context digestline dev wrote, else " + defaultAPI + ")"
	// defaultAPI is where digestline dev serves the API by default.
	defaultAPI = "http://127.0.0.1:8080"
)

// currentStack is the context digestline dev wrote, read once; the zero
// Context when there is none.
var currentStack = sync.OnceValues(func() (stack.Context, error) {
	c, _, err := stack.Load()
	return c, err
})

// natsURL is the bus to connect to: flag, else DIGESTLINE_NATS_URL, else
// the context, else the default.
func natsURL(flag string) (string, error) {
	if v := cmp.Or(flag, os.Getenv("DIGESTLINE_NATS_URL")); v != "" {
		return v, nil
	}
	c, err := currentStack()
	return cmp.Or(c.NATSURL, service.DefaultNATSURL), err
}

// connectBus connects to the bus natsURL finds, with the NATS credentials
// of the environment.
func connectBus(flag, clientName string) (*nats.Conn, jetstream.JetStream, error) {
	url, err := natsURL(flag)
	if err != nil {
		return nil, nil, err
	}
	return service.ConnectFromEnv(url, clientName)
}

// apiURL is the reporter's API base URL: flag, else DIGESTLINE_API_URL,
// else the context, else the default. known is false when it is only the
// default (nothing said where the API is).
func apiURL(flag string) (base string, known bool, err error) {
	v := cmp.Or(flag, os.Getenv("DIGESTLINE_API_URL"))
	if v == "" {
		c, err := currentStack()
		if err != nil {
			return "", false, err
		}
		v = c.APIURL
	}
	known = v != ""
	base, err = stack.APIBase(cmp.Or(v, defaultAPI))
	return base, known, err
}

// tokenFile is the file the API token is read from when
// DIGESTLINE_API_TOKEN is unset: flag, else DIGESTLINE_API_TOKEN_FILE,
// else the context's, else dev's default place.
func tokenFile(flag string) (string, error) {
	if v := cmp.Or(flag, os.Getenv("DIGESTLINE_API_TOKEN_FILE")); v != "" {
		return v, nil
	}
	c, err := currentStack()
	return cmp.Or(c.TokenFile, filepath.Join(devDataDir(), "api-token")), err
}

// devDataDir is where digestline dev keeps its state unless --data says
// otherwise: DIGESTLINE_DATA, else .digestline/dev.
func devDataDir() string { return service.Env("DATA", filepath.Join(".digestline", "dev")) }
