package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// ShutdownHTTP stops srv gracefully, giving in-flight requests up to grace to
// finish, then closes whatever is left: stopping never fails because a client
// was slow.
func ShutdownHTTP(srv *http.Server, grace time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return srv.Close()
	}
	return err
}

// Serve serves srv on ln until ctx ends, then shuts it down gracefully (up
// to 5 s for requests in flight). A server that stops by itself is an error
// naming what it was.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, what string) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("%s: %w", what, err)
	case <-ctx.Done():
	}
	err := ShutdownHTTP(srv, 5*time.Second)
	<-errc // http.ErrServerClosed, now that it is shut
	return err
}

// WriteJSON answers status with v as indented JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// WriteError answers status with the body every digestline endpoint
// fails with: {"error": msg}.
func WriteError(w http.ResponseWriter, status int, msg string) {
	WriteJSON(w, status, map[string]string{"error": msg})
}

// JSONErrors serves mux, and answers a request under prefix that none of
// its routes takes as every digestline endpoint fails, {"error": msg}: 404
// for a path it does not know, 405 (with Allow) for a method the path does
// not take. ServeMux's own answers are plain text, which API clients
// cannot read as the API's errors.
func JSONErrors(prefix string, mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h, pattern := mux.Handler(req)
		if pattern != "" || !strings.HasPrefix(req.URL.Path, prefix) {
			mux.ServeHTTP(w, req)
			return
		}
		// What the mux would answer: its status, and Allow with a 405.
		rec := &recorder{header: http.Header{}, status: http.StatusOK}
		h.ServeHTTP(rec, req)
		if rec.status != http.StatusMethodNotAllowed {
			WriteError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s", req.Method, req.URL.Path))
			return
		}
		allow := rec.header.Get("Allow")
		w.Header().Set("Allow", allow)
		WriteError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s takes %s, not %s", req.URL.Path, allow, req.Method))
	})
}

// recorder keeps the status and header a handler answers with, and drops
// its body.
type recorder struct {
	header http.Header
	status int
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *recorder) WriteHeader(status int)      { r.status = status }
