package verify_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/registry/registrytest"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/digestline/digestline/pkg/sign/signtest"
	"github.com/digestline/digestline/pkg/verify"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

func client() *registry.Client {
	return registry.New(registry.WithKeychain(authn.NewMultiKeychain()), registry.WithRetries(1, time.Millisecond))
}

// forgedSignature attaches to subject a cosign signature whose payload
// names signed (which need not be subject) and whose signature is sig.
func forgedSignature(t *testing.T, subject v1.Descriptor, signed string, sig []byte, l *oci.Layout) oci.Graph {
	t.Helper()
	var p sign.SimpleSigning
	p.Critical.Image.DockerManifestDigest = signed
	p.Critical.Type = "cosign container image signature"
	payload, _ := json.Marshal(p)
	g, err := oci.BuildArtifact(context.Background(), oci.ArtifactConfig{ArtifactType: sign.ArtifactTypeCosignSignature,
		Files: []oci.ArtifactFile{{Content: payload, Title: "signature", MediaType: sign.MediaTypeSimpleSigning,
			Annotations: map[string]string{sign.AnnotationCosignSignature: base64.StdEncoding.EncodeToString(sig)}}},
		Subject: &subject, ConfigMediaType: sign.ArtifactTypeCosignSignature}, l)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestSignaturesAreProvenWithTheTrustedKeys: with trusted keys, an image
// verifies only with a signature by one of them over its digest; a
// signature by another key, a tampered one, or one of another image is
// integrity, naming the referrer; an unsigned image is not-found. On a
// registry with the referrers API and on one with the fallback tag.
func TestSignaturesAreProvenWithTheTrustedKeys(t *testing.T) {
	t.Parallel()
	signer, trusted := signtest.Key(t)
	_, other := signtest.Key(t)
	ctx := context.Background()
	for _, referrersAPI := range []bool{true, false} {
		host := registrytest.Memory(t, referrersAPI)
		for _, tc := range []struct {
			name   string
			attach func(g oci.Graph, l *oci.Layout) []oci.Graph
			keys   []sign.Verifier
			class  failure.Class // "" for valid
		}{
			{"signed", func(g oci.Graph, l *oci.Layout) []oci.Graph {
				sig, err := sign.SignImage(ctx, signer, host+"/team/app", g.Root, time.Time{}, l)
				if err != nil {
					t.Fatal(err)
				}
				return []oci.Graph{sig}
			}, []sign.Verifier{other, trusted}, ""},
			{"signed by a key no longer trusted", func(g oci.Graph, l *oci.Layout) []oci.Graph {
				sig, _ := sign.SignImage(ctx, signer, host+"/team/app", g.Root, time.Time{}, l)
				return []oci.Graph{sig}
			}, []sign.Verifier{other}, failure.Integrity},
			{"tampered signature", func(g oci.Graph, l *oci.Layout) []oci.Graph {
				return []oci.Graph{forgedSignature(t, g.Root, g.Root.Digest.String(), []byte("not a signature"), l)}
			}, []sign.Verifier{trusted}, failure.Integrity},
			{"signature of another image", func(g oci.Graph, l *oci.Layout) []oci.Graph {
				otherImage, _ := registrytest.Image(t, "another image")
				var p sign.SimpleSigning
				p.Critical.Image.DockerManifestDigest = otherImage.Root.Digest.String()
				p.Critical.Type = "cosign container image signature"
				payload, _ := json.Marshal(p)
				sig, _ := signer.Sign(ctx, payload)
				return []oci.Graph{forgedSignature(t, g.Root, otherImage.Root.Digest.String(), sig, l)}
			}, []sign.Verifier{trusted}, failure.Integrity},
			{"unsigned", func(oci.Graph, *oci.Layout) []oci.Graph { return nil }, []sign.Verifier{trusted}, failure.NotFound},
		} {
			g, l := registrytest.Image(t, tc.name)
			g.Referrers = tc.attach(g, l)
			ref, _ := name.ParseReference(host + "/team/app:" + strings.ReplaceAll(tc.name, " ", "-"))
			if _, err := client().Push(ctx, ref, g, l, nil); err != nil {
				t.Fatal(err)
			}
			rep, err := verify.Image(ctx, client(), ref.Context().Digest(g.Root.Digest.String()), nil, verify.Options{Keys: tc.keys})
			if tc.class == "" {
				if err != nil || !strings.Contains(strings.Join(rep.Checks, "\n"), "by key "+trusted.KeyID()+": valid") {
					t.Fatalf("referrers API %v, %s: %v\n%s", referrersAPI, tc.name, err, strings.Join(rep.Checks, "\n"))
				}
				continue
			}
			var e *failure.Error
			if !errors.As(err, &e) || e.Class != tc.class || e.Hint == "" {
				t.Fatalf("referrers API %v, %s: %v, want %s with a hint", referrersAPI, tc.name, err, tc.class)
			}
			if tc.class == failure.Integrity && !strings.Contains(e.Path, g.Referrers[0].Root.Digest.String()) {
				t.Errorf("referrers API %v, %s: the failure's path %q does not name the referrer", referrersAPI, tc.name, e.Path)
			}
		}
	}
}

// TestAVerificationReadsEachArtifactOnce: proving an image's bytes and its
// signatures at once reads each manifest, signature and referrers list once
// from the registry, not once per proof.
func TestAVerificationReadsEachArtifactOnce(t *testing.T) {
	t.Parallel()
	signer, trusted := signtest.Key(t)
	ctx := context.Background()
	target := registrytest.Memory(t, true)
	var mu sync.Mutex
	gets := map[string]int{}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			mu.Lock()
			gets[r.URL.Path]++
			mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")

	g, l := registrytest.Image(t, "verified once")
	sig, err := sign.SignImage(ctx, signer, host+"/team/app", g.Root, time.Time{}, l)
	if err != nil {
		t.Fatal(err)
	}
	g.Referrers = []oci.Graph{sig}
	ref, _ := name.ParseReference(host + "/team/app:1")
	if _, err := client().Push(ctx, ref, g, l, nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	clear(gets)
	mu.Unlock()
	if _, err := verify.Image(ctx, client(), ref.Context().Digest(g.Root.Digest.String()), &g, verify.Options{Keys: []sign.Verifier{trusted}}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for path, n := range gets {
		if n > 1 {
			t.Errorf("GET %s %d times", path, n)
		}
	}
	if len(gets) == 0 {
		t.Fatal("the verification read nothing through the proxy")
	}
}
