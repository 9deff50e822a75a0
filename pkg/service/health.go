package service

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Health answers whether a process is alive, and whether it is ready: its
// NATS connection is up, JetStream answers, and each registry it depends on
// answers /v2/.
type Health struct {
	NC *nats.Conn
	JS jetstream.JetStream
	// Registries are host[:port] whose /v2/ must answer (any status below
	// 500: 401 means up and asking for credentials).
	Registries []string
	// Metrics serves /metrics, when set.
	Metrics http.Handler
}

// Ready checks every dependency and says which failed.
func (h *Health) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var errs []error
	if h.NC == nil || !h.NC.IsConnected() {
		errs = append(errs, errors.New("NATS: not connected"))
	} else if _, err := h.JS.AccountInfo(ctx); err != nil {
		errs = append(errs, fmt.Errorf("JetStream: %w", err))
	}
	for _, r := range h.Registries {
		if err := pingRegistry(ctx, r); err != nil {
			errs = append(errs, fmt.Errorf("registry %s: %w", r, err))
		}
	}
	return errors.Join(errs...)
}

func pingRegistry(ctx context.Context, host string) error {
	// HTTPS first; a registry that answers only plain HTTP (localhost, a
	// compose network's) is still up. No credential is sent either way.
	var err error
	for _, scheme := range []string{"https", "http"} {
		var req *http.Request
		if req, err = http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+host+"/v2/", nil); err != nil {
			return err
		}
		var resp *http.Response
		if resp, err = http.DefaultClient.Do(req); err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			return fmt.Errorf("/v2/ answers %s", resp.Status)
		}
		return nil
	}
	return err
}

// Probe GETs url and succeeds when it answers 200 within 5 s.
func Probe(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answers %s", url, resp.Status)
	}
	return nil
}

// Register adds /healthz, /readyz and (with Metrics) /metrics to mux.
func (h *Health) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		if err := h.Ready(req.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, "not ready:\n%v\n", err)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	if h.Metrics != nil {
		mux.Handle("GET /metrics", h.Metrics)
	}
}

// Handler serves only the health endpoints.
func (h *Health) Handler() http.Handler {
	mux := http.NewServeMux()
	h.Register(mux)
	return mux
}
