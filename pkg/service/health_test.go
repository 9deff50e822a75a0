package service

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/bus/bustest"
)

func TestReadinessNamesWhatIsDown(t *testing.T) {
	ns := bustest.NewServer(t)
	nc, js, err := Connect(ns.URL(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusUnauthorized) }))
	defer reg.Close()
	up := strings.TrimPrefix(reg.URL, "http://")

	srv := httptest.NewServer((&Health{NC: nc, JS: js, Registries: []string{up, "127.0.0.1:1"}}).Handler())
	defer srv.Close()
	readyz := func() (int, string) {
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := readyz()
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "registry 127.0.0.1:1") || strings.Contains(body, up) {
		t.Fatalf("/readyz with one registry down: %d %s", code, body)
	}

	h := &Health{NC: nc, JS: js, Registries: []string{up}} // 401 means up
	if err := h.Ready(context.Background()); err != nil {
		t.Fatalf("ready: %v", err)
	}
	ns.NATS.Shutdown()
	ns.NATS.WaitForShutdown()
	deadline := time.Now().Add(5 * time.Second)
	for nc.IsConnected() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := h.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "NATS: not connected") {
		t.Fatalf("ready with NATS down: %v", err)
	}
}

func TestProbeIsAHealthCheck(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }))
	defer srv.Close()
	if err := Probe(srv.URL + "/readyz"); err != nil {
		t.Fatalf("probe of a ready service: %v", err)
	}
	status = http.StatusServiceUnavailable
	if err := Probe(srv.URL + "/readyz"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("probe of an unready service: %v", err)
	}
}

func TestSameSecret(t *testing.T) {
	for _, tc := range []struct {
		given, want string
		same        bool
	}{
		{"s3cret-token", "s3cret-token", true},
		{"s3cret-toke", "s3cret-token", false},
		{"", "", false}, // an unset secret lets nobody in
		{"anything", "", false},
	} {
		if got := SameSecret(tc.given, tc.want); got != tc.same {
			t.Errorf("SameSecret(%q, %q) = %v", tc.given, tc.want, got)
		}
	}
}
