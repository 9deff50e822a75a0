package reporter

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/registry/registrytest"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/pkg/tooltest"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// BenchmarkGC plans and deletes on a repository of BENCH_GC_DIGESTS
// (default 2,000) tagged digests with 5 referrers each (listed by their
// fallback tag: distribution v3 has no referrers API), of which dev holds
// the last and every other is garbage: digestline's collection
// (collect, as POST /v1/gc runs it) against a naive pruning script with
// regctl, which deletes the same manifests one command each (the
// referrers regctl lists, then the image, then its fallback tag). Each
// goes through a proxy that counts requests; both start from a seeded
// repository of their own. Reported: seconds and requests of each, and
// the manifests each deleted.
func BenchmarkGC(b *testing.B) {
	n := 2000
	if s := os.Getenv("BENCH_GC_DIGESTS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	regctl := tooltest.Find(b, "regctl")
	host := registrytest.Distribution(b, registrytest.DistributionV3)
	var count atomic.Int64
	target, _ := url.Parse("http://" + host)
	proxy := httputil.NewSingleHostReverseProxy(target)
	ps := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { count.Add(1); proxy.ServeHTTP(w, r) }))
	b.Cleanup(ps.Close)
	phost := strings.TrimPrefix(ps.URL, "http://")
	srv, s := newStore(b)
	r := &reporter{cfg: Config{Deps: service.Deps{JetStream: srv.JetStream}, Environments: []string{"dev", "prod"}}, store: s,
		Worker: service.Worker{Bus: bus.NewBus(srv.JetStream, "/digestline/reporter/bench"), Registry: registry.New()}}
	ri, err := openRunIndexer(context.Background(), srv.JetStream, s.index)
	if err != nil {
		b.Fatal(err)
	}
	r.runs = ri
	for b.Loop() {
		ours, theirs := phost+"/gc/ours", phost+"/gc/theirs"
		seedGC(b, r, ours, n)
		doomed := seedGC(b, r, theirs, n)

		count.Store(0)
		start := time.Now()
		zero := 0
		rep, err := r.collect(context.Background(), api.GCRequest{Repository: ours, KeepLast: &zero, KeepDays: &zero})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "digestline-s")
		b.ReportMetric(float64(count.Load()), "digestline-requests")
		b.ReportMetric(float64(rep.Deleted), "digestline-deleted")

		count.Store(0)
		start = time.Now()
		deleted := pruneWithRegctl(b, regctl, phost, theirs, doomed)
		b.ReportMetric(time.Since(start).Seconds(), "regctl-s")
		b.ReportMetric(float64(count.Load()), "regctl-requests")
		b.ReportMetric(float64(deleted), "regctl-deleted")
	}
}

// seedGC pushes n tagged images to repo, each with 5 referrers (listed in
// its fallback index), marks each verified a year ago, and has dev hold
// the last: it returns the other n-1, the garbage.
func seedGC(b *testing.B, r *reporter, repository string, n int) []digest.Digest {
	b.Helper()
	ctx := context.Background()
	rn, err := name.NewRepository(repository, name.Insecure)
	if err != nil {
		b.Fatal(err)
	}
	repo, err := r.Registry.Open(ctx, rn, true)
	if err != nil {
		b.Fatal(err)
	}
	put := func(ref string, m v1.Manifest) (v1.Descriptor, error) {
		body, _ := json.Marshal(m)
		if ref == "" { // by digest: a referrer
			ref = digest.FromBytes(body).String()
		}
		_, err := repo.PutManifest(ctx, ref, v1.MediaTypeImageManifest, body)
		return v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: digest.FromBytes(body), Size: int64(len(body)), ArtifactType: m.ArtifactType}, err
	}
	blob := func(content string, mt string) (v1.Descriptor, error) {
		d := v1.Descriptor{MediaType: mt, Digest: digest.FromString(content), Size: int64(len(content))}
		return d, repo.UploadBlob(ctx, d, strings.NewReader(content))
	}
	empty, err := blob("{}", v1.MediaTypeEmptyJSON)
	if err != nil {
		b.Fatal(err)
	}
	out := make([]digest.Digest, n)
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(8)
	for i := range n {
		eg.Go(func() error {
			if ectx.Err() != nil {
				return ectx.Err()
			}
			cfg, err := blob(fmt.Sprintf(`{"architecture":"amd64","os":"linux","created":"%d"}`, i), v1.MediaTypeImageConfig)
			if err != nil {
				return err
			}
			layer, err := blob(fmt.Sprintf("%s layer %d", repository, i), v1.MediaTypeImageLayer)
			if err != nil {
				return err
			}
			img, err := put(fmt.Sprintf("v%d", i), v1.Manifest{Versioned: specsV2, MediaType: v1.MediaTypeImageManifest, Config: cfg, Layers: []v1.Descriptor{layer}})
			if err != nil {
				return err
			}
			var refs []v1.Descriptor
			for j := range 5 {
				l, err := blob(fmt.Sprintf("%s referrer %d of %d", repository, j, i), "application/vnd.example.evidence")
				if err != nil {
					return err
				}
				ref, err := put("", v1.Manifest{Versioned: specsV2, MediaType: v1.MediaTypeImageManifest, ArtifactType: fmt.Sprintf("application/vnd.example.evidence-%d", j),
					Config: empty, Layers: []v1.Descriptor{l}, Subject: &img})
				if err != nil {
					return err
				}
				refs = append(refs, ref)
			}
			if err := repo.AddFallbackReferrers(ctx, img.Digest, refs...); err != nil {
				return err
			}
			out[i] = img.Digest
			return r.store.markVerified(ctx, Verified{Repository: rn.Name(), Digest: img.Digest.String(), VerifiedAt: time.Now().Add(-365 * 24 * time.Hour), RunID: "seed"}, "dev")
		})
	}
	if err := eg.Wait(); err != nil {
		b.Fatal(err)
	}
	if _, _, err := r.store.record(ctx, events.Promotion{Environment: "dev", Repository: rn.Name(), Digest: out[n-1].String(), PromotedAt: time.Now(), RunID: "seed"}); err != nil {
		b.Fatal(err)
	}
	return out[:n-1]
}

// specsV2 is every manifest's schemaVersion.
var specsV2 = specs.Versioned{SchemaVersion: 2}

// pruneWithRegctl deletes each doomed image as a script would with regctl:
// list its referrers, delete each, delete the image, delete its fallback
// tag; one command each. It returns the manifests deleted.
func pruneWithRegctl(b *testing.B, regctl, host, repository string, doomed []digest.Digest) int {
	b.Helper()
	home := b.TempDir()
	try := func(args ...string) (string, error) {
		cmd := exec.Command(regctl, args...)
		cmd.Env = append(os.Environ(), "HOME="+home)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	run := func(args ...string) string {
		out, err := try(args...)
		if err != nil {
			b.Fatalf("regctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	run("registry", "set", "--tls", "disabled", host)
	deleted := 0
	for _, d := range doomed {
		ref := repository + "@" + d.String()
		for _, r := range strings.Fields(run("artifact", "list", ref, "--format", "{{range .Descriptors}}{{println .Digest}}{{end}}")) {
			run("manifest", "rm", repository+"@"+r)
			deleted++
		}
		run("manifest", "rm", ref)
		deleted++
		// regctl rewrites the fallback index as it deletes each referrer;
		// what is left of it, if anything, goes last.
		if fb, err := try("manifest", "head", repository+":"+registry.FallbackTag(d), "--format", "{{.GetDescriptor.Digest}}"); err == nil && strings.TrimSpace(fb) != "" {
			fb = strings.TrimSpace(fb)
			run("manifest", "rm", repository+"@"+fb)
			deleted++
		}
	}
	return deleted
}
