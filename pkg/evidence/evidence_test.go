package evidence_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/evidence"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/registry/registrytest"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/digestline/digestline/pkg/sign/signtest"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// requests records the paths a client asks for.
type requests struct {
	mu    sync.Mutex
	paths []string
}

func (r *requests) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.paths = append(r.paths, req.Method+" "+req.URL.Path)
	r.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (r *requests) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.paths
	r.paths = nil
	return p
}

// TestACacheReadsEachProofOnce: evidence collected again through a cache
// reads the referrers' listing and nothing else; with other keys it is
// proven anew (and fails), and a referrer added since is read and proven.
func TestACacheReadsEachProofOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	signer, trusted := signtest.Key(t)
	_, other := signtest.Key(t)
	host := registrytest.Memory(t, true)
	seen := &requests{}
	c := registry.New(registry.WithKeychain(authn.NewMultiKeychain()), registry.WithInsecure(host), registry.WithTransport(seen))
	g, l := registrytest.Image(t, "cached")
	sig, err := sign.SignImage(ctx, signer, host+"/team/app", g.Root, time.Time{}, l)
	if err != nil {
		t.Fatal(err)
	}
	prov, err := sign.Attest(ctx, signer, host+"/team/app", g.Root, sign.PredicateSLSAProvenance, map[string]string{"buildType": "test"}, time.Time{}, l)
	if err != nil {
		t.Fatal(err)
	}
	g.Referrers = append(g.Referrers, sig)
	ref, _ := name.ParseReference(host + "/team/app@" + g.Root.Digest.String())
	if _, err := c.Push(ctx, ref, g, l, nil); err != nil {
		t.Fatal(err)
	}
	repo, err := c.Open(ctx, ref.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	cache := evidence.NewCache(16)
	collect := func(keys ...sign.Verifier) (evidence.Evidence, []string) {
		t.Helper()
		seen.take()
		ev, err := cache.Collect(ctx, repo, g.Root.Digest, keys)
		if err != nil {
			t.Fatal(err)
		}
		return ev, seen.take()
	}

	ev, reads := collect(trusted)
	if len(ev.Signatures) != 1 || len(ev.Problems) != 0 || len(reads) < 3 {
		t.Fatalf("first collection: %+v, after %d requests %v", ev, len(reads), reads)
	}
	ev, reads = collect(trusted)
	for _, r := range reads {
		if !strings.Contains(r, "/referrers/") && !strings.HasPrefix(r, "HEAD ") {
			t.Fatalf("again through the cache: %+v, after %v; want the listings alone (referrers, cosign's tags)", ev, reads)
		}
	}
	if len(ev.Signatures) != 1 || len(ev.Problems) != 0 || len(reads) != 3 {
		t.Fatalf("again through the cache: %+v, after %v; want the listings alone (referrers, cosign's tags)", ev, reads)
	}
	if ev, _ = collect(other); len(ev.Signatures) != 0 || len(ev.Problems) != 1 {
		t.Fatalf("with another key: %+v; want the signature proven anew, and refused", ev)
	}
	if ev, _ = collect(trusted); len(ev.Signatures) != 1 || len(ev.Problems) != 0 {
		t.Fatalf("with the trusted key after another: %+v", ev)
	}

	// The provenance, attached since: read and proven, the signature not read again.
	if _, err := c.Push(ctx, ref.Context().Digest(prov.Root.Digest.String()), prov, l, nil); err != nil {
		t.Fatal(err)
	}
	ev, reads = collect(trusted)
	if len(ev.Signatures) != 1 || len(ev.Attestations) != 1 {
		t.Fatalf("after an attestation was attached: %+v", ev)
	}
	for _, r := range reads {
		if strings.Contains(r, sig.Root.Digest.String()) {
			t.Errorf("the proven signature was read again: %v", reads)
		}
	}
}
