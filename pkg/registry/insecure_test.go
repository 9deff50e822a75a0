package registry_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/digestline/digestline/pkg/registry"
	"github.com/google/go-containerregistry/pkg/name"
)

// TestInsecureRegistriesAreSpokenToOverHTTP: a registry known by a name (as
// in a compose network) answers plain HTTP only to a client told so.
func TestInsecureRegistriesAreSpokenToOverHTTP(t *testing.T) {
	addr := newRegistry(t)
	g, l := buildImage(t, "insecure")
	// registry.test resolves, for this client only, to the test registry.
	dial := &net.Dialer{}
	transport := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return dial.DialContext(ctx, network, addr)
	}}
	ref, err := name.ParseReference("registry.test:5000/team/app:1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newClient(registry.WithTransport(transport)).Push(context.Background(), ref, g, l, nil); err == nil {
		t.Fatal("pushed over plain HTTP to a registry nobody called insecure")
	}
	t.Setenv("DIGESTLINE_REGISTRY_TIMEOUT", "soon")
	if _, err := registry.OptionsFromEnv(); err == nil || !strings.Contains(err.Error(), "DIGESTLINE_REGISTRY_TIMEOUT") {
		t.Fatalf("a timeout that is no duration: %v", err)
	}
	t.Setenv("DIGESTLINE_REGISTRY_TIMEOUT", "")
	t.Setenv("DIGESTLINE_INSECURE_REGISTRIES", "other.test, registry.test:5000")
	opts, err := registry.OptionsFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	opts = append(opts, registry.WithTransport(transport))
	if _, err := newClient(opts...).Push(context.Background(), ref, g, l, nil); err != nil {
		t.Fatalf("push to an insecure registry: %v", err)
	}
}
