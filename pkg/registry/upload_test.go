package registry_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/registry/registrytest"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/olareg/olareg"
	olaregconfig "github.com/olareg/olareg/config"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// resetAt is a proxy in front of a registry that counts the bytes PATCH
// requests carry and, once, resets the connection instead of forwarding the
// chunk that would cross threshold bytes.
type resetAt struct {
	next      http.Handler
	threshold int64

	mu       sync.Mutex
	received int64 // PATCH bytes that reached the proxy, forwarded or not
	reset    bool
}

func (p *resetAt) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPatch {
		p.next.ServeHTTP(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	p.mu.Lock()
	before := p.received
	p.received += int64(len(body))
	cut := !p.reset && before+int64(len(body)) > p.threshold
	if cut {
		p.reset = true
	}
	p.mu.Unlock()
	if cut {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close() // the client sees the connection die mid-upload
		}
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	p.next.ServeHTTP(w, r)
}

func TestChunkedUploadResumesAfterAReset(t *testing.T) {
	t.Parallel()
	raw := make([]byte, 3<<19) // 1.5 MiB of noise: the layer does not shrink
	_, _ = rand.Read(raw)
	g, l := buildImage(t, string(raw))
	layer := g.Blobs()[1]

	reg := olareg.New(olaregconfig.Config{Storage: olaregconfig.ConfigStorage{StoreType: olaregconfig.StoreMem}})
	t.Cleanup(func() { _ = reg.Close() })
	proxy := &resetAt{next: reg, threshold: layer.Size * 6 / 10}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")

	const chunk = 64 << 10
	client := newClient(registry.WithChunking(256<<10, chunk), registry.WithJobs(1))
	ref, _ := name.ParseReference(host + "/team/big:1")
	rec := &recorder{}
	prog := &progressLog{}
	res, err := client.Push(context.Background(), ref, g, l, rec.observe, registry.WithProgress(prog.record))
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	if !proxy.reset {
		t.Fatal("the proxy never reset the upload: the test proved nothing")
	}
	if rec.count(events.StatusRetrying) != 1 {
		t.Errorf("%d retries, want 1", rec.count(events.StatusRetrying))
	}
	// Everything before the reset was kept: at most the lost chunk is sent twice.
	if proxy.received > layer.Size+chunk {
		t.Errorf("the proxy saw %d bytes for a %d-byte layer: the upload started over", proxy.received, layer.Size)
	}
	repo, _ := client.Open(context.Background(), ref.Context(), false)
	if ok, err := repo.HeadBlob(context.Background(), layer.Digest); err != nil || !ok {
		t.Fatalf("the layer is not in the registry: %v", err)
	}
	if res.Uploaded != 2 {
		t.Errorf("uploaded %d blobs, want 2", res.Uploaded)
	}
	// The progress a person watches resumes where the registry's data stops.
	seen := prog.of(layer.Digest.String())
	if len(seen) < 3 || seen[0] != 0 || seen[len(seen)-1] != layer.Size {
		t.Fatalf("layer progress %v: want 0 first and %d last", seen, layer.Size)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] < seen[i-1] && seen[i] < layer.Size/2 {
			t.Errorf("progress fell back from %d to %d after the reset: the resume was not reported", seen[i-1], seen[i])
		}
	}
}

// progressLog records every Progress call per blob.
type progressLog struct {
	mu   sync.Mutex
	done map[string][]int64
}

func (p *progressLog) record(b v1.Descriptor, done int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		p.done = map[string][]int64{}
	}
	p.done[b.Digest.String()] = append(p.done[b.Digest.String()], done)
}

func (p *progressLog) of(d string) []int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done[d]
}

// TestSmallBlobsGoUpInOnePostWhereTheRegistryTakesIt: a blob of up to 1 MiB
// goes up in the spec's single POST (the blob as the body of the POST that
// opens an upload) to a registry that keeps it there. A registry that
// answers with an upload session instead (distribution, as the spec says one
// without single POSTs SHOULD), or refuses a POST with a body, gets that one
// blob in the session, and every later blob in a session without being
// asked again. Every blob is there afterwards, whole.
func TestSmallBlobsGoUpInOnePostWhereTheRegistryTakesIt(t *testing.T) {
	t.Parallel()
	refuse := func(r *http.Request) (int, http.Header, bool) {
		if r.Method == http.MethodPost && r.URL.Query().Get("digest") != "" {
			return http.StatusMethodNotAllowed, nil, true
		}
		return 0, nil, false
	}
	for _, tc := range []struct {
		name      string
		registry  func(t *testing.T) string
		takesPost bool
	}{
		{"olareg keeps it", func(t *testing.T) string { return newOlareg(t) }, true},
		{"distribution opens a session", func(t *testing.T) string { return registrytest.Distribution(t, registrytest.DockerRegistry) }, false},
		{"a registry refusing a body in a POST", func(t *testing.T) string { return newOlareg(t, refuse) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var singlePosts, sessionPuts atomic.Int32
			count := func(r *http.Request) (int, http.Header, bool) {
				switch {
				case r.Method == http.MethodPost && r.URL.Query().Get("digest") != "":
					singlePosts.Add(1)
				case r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/"):
					sessionPuts.Add(1)
				}
				return 0, nil, false
			}
			host := serve(t, httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: tc.registry(t)}), count)
			client := newClient()
			ctx := context.Background()
			var postsAfterFirst int32
			for i, content := range []string{"first", "second"} {
				g, l := buildImage(t, content)
				ref := mustRef(t, host+"/team/small:"+content)
				if _, err := client.Push(ctx, ref, g, l, nil); err != nil {
					t.Fatalf("push %d: %v", i+1, err)
				}
				repo, err := client.Open(ctx, ref.Context(), false)
				if err != nil {
					t.Fatal(err)
				}
				for _, b := range g.Blobs() {
					if _, err := repo.ReadBlob(ctx, b); err != nil {
						t.Errorf("push %d: blob %s: %v", i+1, b.Digest, err)
					}
				}
				if i == 0 {
					postsAfterFirst = singlePosts.Load()
				}
			}
			const blobs = 2 * 2 // a config and a layer per image
			posts, puts := singlePosts.Load(), sessionPuts.Load()
			if tc.takesPost && (posts != blobs || puts != 0) {
				t.Errorf("%d single POSTs and %d session PUTs, want every blob in a single POST", posts, puts)
			}
			// The first push's two blobs go up at once: each may try.
			if !tc.takesPost && (postsAfterFirst < 1 || posts != postsAfterFirst || puts != blobs) {
				t.Errorf("%d single POSTs (%d at the first push) and %d session PUTs, want the first push's blobs tried in one, then every blob in a session",
					posts, postsAfterFirst, puts)
			}
		})
	}
}
