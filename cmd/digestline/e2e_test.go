package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/cmd/digestline/internal/ship"
	"github.com/digestline/digestline/pkg/api"
	"github.com/digestline/digestline/pkg/blobstore"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/digestline/digestline/services/reporter"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	godigest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

func TestShipEndToEnd(t *testing.T) {
	s, _ := e2etest.StartStack(t)
	res, out, err := s.Ship(t, e2etest.SourceDir(t, "e2e"), "team/app:lab")
	if err != nil {
		t.Fatalf("ship: %v\n%s", err, out)
	}
	digest := res.Promotion.Digest
	repo := s.RegistryAddr + "/team/app"
	if res.Promotion.Environment != "dev" || res.Promotion.Repository != repo || !strings.HasPrefix(digest, "sha256:") {
		t.Fatalf("promotion %+v", res.Promotion)
	}
	for _, line := range []string{"[STAGE] blob check: 0/2 exists", "[VERIFY] digest match", "[VERIFY] manifest descriptor count: 3",
		fmt.Sprintf("promoted dev %s@%s", repo, digest)} {
		if !strings.Contains(out, line) {
			t.Errorf("ship output lacks %q:\n%s", line, out)
		}
	}

	t.Run("event sequence", func(t *testing.T) {
		got := e2etest.Names(s.RunEvents(t, res.RunID))
		want := []string{"build.requested", "build.completed"}
		for range e2etest.PushStages() {
			want = append(want, "push.stage")
		}
		// The gates approve dev; the pusher moves repo:dev (uploading
		// nothing) and the verifier proves the digest again.
		want = append(want, "push.completed", "verify.completed", "promotion.approved")
		for range e2etest.PushStages() {
			want = append(want, "push.stage")
		}
		want = append(want, "push.completed", "verify.completed", "promoted")
		if !slices.Equal(got, want) {
			t.Fatalf("events\n got %v\nwant %v", got, want)
		}
	})

	t.Run("small blobs travel in build.completed and go no further", func(t *testing.T) {
		raw, err := runs.Events(context.Background(), s.JetStream, res.RunID)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range raw {
			ev, name, err := events.Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			switch name {
			case events.BuildCompleted:
				build, err := events.Decode[events.BuildResult](ev)
				if err != nil {
					t.Fatal(err)
				}
				// A tiny image: its manifest, config and layer all travel.
				for _, d := range build.Graph.Descriptors {
					if !oci.Matches(d, d.Data) {
						t.Errorf("build.completed's %s (%s, %d bytes) has %d bytes embedded, not its blob", d.Digest, d.MediaType, d.Size, len(d.Data))
					}
				}
			case events.PushCompleted:
				push, err := events.Decode[events.PushResult](ev)
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range append(push.Graph.Descriptors, push.Graph.Root) {
					if d.Data != nil {
						t.Errorf("push.completed's %s carries embedded data", d.Digest)
					}
				}
			}
		}
	})

	t.Run("the environment's tag points at the digest", func(t *testing.T) {
		tag, err := name.NewTag(repo + ":dev")
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Head(tag)
		if err != nil || desc.Digest.String() != digest {
			t.Fatalf("%s:dev is %v (%v), want %s", repo, desc, err, digest)
		}
	})

	t.Run("image pulled independently by digest", func(t *testing.T) {
		ref, err := name.NewDigest(repo + "@" + digest)
		if err != nil {
			t.Fatal(err)
		}
		img, err := remote.Image(ref)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(img); err != nil {
			t.Fatal(err)
		}
		cfg, err := img.ConfigFile()
		if err != nil || !slices.Equal(cfg.Config.Entrypoint, []string{"/bin/app"}) {
			t.Fatalf("config %+v, %v", cfg, err)
		}
	})

	t.Run("promotion record in KV and API", func(t *testing.T) {
		var recs api.Page[events.Promotion]
		if s.GetJSON(t, "/v1/promotions", &recs) != http.StatusOK {
			t.Fatal("GET /v1/promotions failed")
		}
		if len(recs.Items) != 1 || recs.Items[0].Digest != digest || recs.Items[0].RunID != res.RunID || recs.Items[0].Evidence.Verify == "" || recs.Items[0].Evidence.Push == "" || recs.Items[0].Evidence.Build == "" {
			t.Fatalf("records %+v", recs.Items)
		}
		kv, err := s.JetStream.KeyValue(context.Background(), events.PromotionsBucket)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := kv.Keys(context.Background())
		if err != nil || len(keys) != 1 || !strings.HasPrefix(keys[0], "dev.") {
			t.Fatalf("KV keys %v, %v", keys, err)
		}
	})

	t.Run("one trace with a span per service and per push stage", func(t *testing.T) {
		var root sdktrace.ReadOnlySpan
		for _, sp := range s.Spans.Ended() {
			if strings.HasPrefix(sp.Name(), "ship ") {
				root = sp
			}
		}
		if root == nil {
			t.Fatal("no ship span")
		}
		want := []string{"builder process build.requested", "pusher process build.completed",
			"verifier process push.completed", "reporter process verify.completed", "pusher process promotion.approved"}
		for _, st := range e2etest.PushStages() {
			want = append(want, "push "+st)
		}
		e2etest.WaitFor(t, "every span of the run", func() bool {
			have := map[string]bool{}
			for _, sp := range s.Spans.Ended() {
				if sp.SpanContext().TraceID() == root.SpanContext().TraceID() {
					have[sp.Name()] = true
				}
			}
			for _, w := range want {
				if !have[w] {
					return false
				}
			}
			return true
		})
		// Registry calls are HTTP client spans, by OpenTelemetry's HTTP
		// conventions, inside the push stage that made them.
		httpSpans := 0
		for _, sp := range s.Spans.Ended() {
			if sp.SpanContext().TraceID() != root.SpanContext().TraceID() || sp.SpanKind() != trace.SpanKindClient {
				continue
			}
			for _, a := range sp.Attributes() {
				if a.Key == "http.request.method" {
					httpSpans++
				}
			}
		}
		if httpSpans == 0 {
			t.Error("no HTTP client span for the registry calls in the run's trace")
		}
	})

	t.Run("warm ship: same digest, nothing uploaded", func(t *testing.T) {
		again, out, err := s.Ship(t, e2etest.SourceDir(t, "e2e"), "team/app:lab")
		if err != nil {
			t.Fatalf("ship: %v\n%s", err, out)
		}
		if again.Promotion.Digest != digest {
			t.Fatalf("same source gave %s, then %s", digest, again.Promotion.Digest)
		}
		for _, ev := range s.RunEvents(t, again.RunID) {
			if n, _ := events.NameOfType(ev["type"].(string)); n == events.PushCompleted {
				if p := e2etest.DataOf[events.PushResult](t, ev); p.BlobsUploaded != 0 {
					t.Fatalf("warm push uploaded %d blobs", p.BlobsUploaded)
				}
				return
			}
		}
		t.Fatal("no push.completed in the warm run")
	})

	t.Run("a source unpacked over another's tree builds as alone", func(t *testing.T) {
		// The builder unpacks each source over the one before
		// (oci.ExtractTarOver): one whose files are another's directories,
		// with other modes and more files, leaves nothing behind.
		other := t.TempDir()
		for name, mode := range map[string]os.FileMode{"bin/app/run": 0o755, "data.txt/inside": 0o600, "more/file": 0o644} {
			p := filepath.Join(other, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(name), mode); err != nil {
				t.Fatal(err)
			}
		}
		if _, out, err := s.Ship(t, other, "team/other:lab"); err != nil {
			t.Fatalf("ship: %v\n%s", err, out)
		}
		again, out, err := s.Ship(t, e2etest.SourceDir(t, "e2e"), "team/app:lab")
		if err != nil {
			t.Fatalf("ship: %v\n%s", err, out)
		}
		if again.Promotion.Digest != digest {
			t.Fatalf("the source built %s alone, and %s over another's tree", digest, again.Promotion.Digest)
		}
	})

	t.Run("a source that writes under its own symlink builds in a new directory", func(t *testing.T) {
		// oci.ErrNotOver: the builder unpacks it afresh instead.
		var tarball bytes.Buffer
		tw := tar.NewWriter(&tarball)
		for _, h := range []tar.Header{
			{Name: "real/", Typeflag: tar.TypeDir, Mode: 0o755},
			{Name: "a", Typeflag: tar.TypeSymlink, Linkname: "real", Mode: 0o777},
			{Name: "a/f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2},
		} {
			if err := tw.WriteHeader(&h); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := tw.Write([]byte("hi")); err != nil {
			t.Fatal(err)
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		store, err := blobstore.Open(ctx, s.JetStream)
		if err != nil {
			t.Fatal(err)
		}
		d := godigest.FromBytes(tarball.Bytes())
		if err := store.Put(ctx, v1.Descriptor{MediaType: "application/x-tar", Digest: d, Size: int64(tarball.Len())}, bytes.NewReader(tarball.Bytes())); err != nil {
			t.Fatal(err)
		}
		built := func(d godigest.Digest) string {
			ev, err := s.Bus.Start(ctx, events.BuildRequested, uuid.NewString(), "e2e", events.BuildRequest{
				Source: events.Source{Kind: events.SourceObject, Object: d.String()}, Target: s.RegistryAddr + "/team/linked:lab"})
			if err != nil {
				t.Fatal(err)
			}
			evs := s.RunEvents(t, events.RunID(ev))
			for _, ev := range evs {
				if n, _ := events.NameOfType(ev["type"].(string)); n == events.BuildCompleted {
					return e2etest.DataOf[events.BuildResult](t, ev).Graph.Root.Digest.String()
				}
			}
			t.Fatalf("the run's events: %v", e2etest.Names(evs))
			return ""
		}
		// The tree it makes, as a directory: the same image.
		tree := t.TempDir()
		if err := os.MkdirAll(filepath.Join(tree, "real"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tree, "real", "f"), []byte("hi"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("real", filepath.Join(tree, "a")); err != nil {
			t.Fatal(err)
		}
		same, err := ship.Upload(ctx, s.JetStream, tree)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := built(d), built(same); got != want {
			t.Fatalf("built %s, want %s (the tree it writes, shipped as a directory)", got, want)
		}
	})
}

// badKeychain answers every registry with wrong credentials.
type badKeychain struct{}

func (badKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return &authn.Basic{Username: "ci", Password: "wrong-password"}, nil
}

func TestShipWithWrongCredentialsFailsAsAuth(t *testing.T) {
	requireAuth := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != "ci" || p != "right-password" {
				w.Header().Set("WWW-Authenticate", `Basic realm="digestline-test"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	s, _ := e2etest.StartStack(t, e2etest.WithRegistryWrapper(requireAuth),
		e2etest.WithRegistryClient(registry.New(registry.WithKeychain(badKeychain{}), registry.WithRetries(2, time.Millisecond))))
	res, out, err := s.Ship(t, e2etest.SourceDir(t, "auth"), "team/app:lab")
	var runErr *runs.Error
	if !errors.As(err, &runErr) || runErr.Event != events.PushFailed || runErr.Failure.Class != "auth" || runErr.Failure.Stage != "auth" {
		t.Fatalf("ship = %v\n%s", err, out)
	}
	if runErr.Failure.Hint == "" || strings.Contains(out+err.Error(), "wrong-password") {
		t.Fatalf("hint %q; output must not hold the password:\n%s", runErr.Failure.Hint, out)
	}
	evs := s.RunEvents(t, res.RunID)
	for _, ev := range evs {
		n, _ := events.NameOfType(ev["type"].(string))
		if n == events.PushStage && e2etest.DataOf[events.StageReport](t, ev).Status == events.StatusRetrying {
			t.Fatal("an auth failure was retried")
		}
		if n == events.Promoted {
			t.Fatal("a failed push was promoted")
		}
	}
	var recs api.Page[events.Promotion]
	s.GetJSON(t, "/v1/promotions", &recs)
	if len(recs.Items) != 0 {
		t.Fatalf("promotion records after a failed push: %+v", recs.Items)
	}
}

// tamper alters what the registry serves to GET requests — what the
// verifier pulls; pushes never GET — by repository: corrupt/ flips a blob's
// last byte, swapped/ serves other bytes of the same size, missing/ loses
// blobs, mediatype/ serves manifests as Docker v2.2, moved/ has the tag
// point elsewhere.
func tamper(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		repo, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v2/"), "/")
		blob := strings.Contains(r.URL.Path, "/blobs/sha256:")
		byTag := strings.Contains(r.URL.Path, "/manifests/") && !strings.Contains(r.URL.Path, "/manifests/sha256:")
		switch {
		case repo == "moved" && byTag && (r.Method == http.MethodGet || r.Method == http.MethodHead):
			w.Header().Set("Docker-Content-Digest", "sha256:"+strings.Repeat("0", 64))
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			w.Header().Set("Content-Length", "2")
			w.WriteHeader(http.StatusOK)
			if r.Method == http.MethodGet {
				_, _ = w.Write([]byte("{}"))
			}
			return
		case r.Method != http.MethodGet:
		case repo == "missing" && blob:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}`))
			return
		case (repo == "corrupt" || repo == "swapped") && blob, repo == "mediatype" && strings.Contains(r.URL.Path, "/manifests/"):
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			switch {
			case repo == "corrupt" && len(body) > 0:
				body[len(body)-1] ^= 0xff
			case repo == "swapped":
				slices.Reverse(body) // same size, other content
			case repo == "mediatype":
				rec.Header().Set("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(body)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// TestTamperedRegistriesFailVerificationAndNothingIsPromoted: each way a
// registry can serve something else than what was pushed ends the run in a
// verify.failed of the right class, at the right place, with no promotion.
func TestTamperedRegistriesFailVerificationAndNothingIsPromoted(t *testing.T) {
	s, _ := e2etest.StartStack(t, e2etest.WithRegistryWrapper(tamper))
	for _, tc := range []struct {
		repo, class, path, message string
		mismatches                 int
	}{
		{"corrupt", "integrity", "manifest → ", "hashes to", 2},
		{"swapped", "integrity", "manifest → ", "hashes to", 2},
		{"missing", "not-found", "manifest → ", "", 2},
		{"mediatype", "schema", "manifest", "media type", 0},
		{"moved", "conflict", "tag lab", "points at sha256:0000", 1},
	} {
		t.Run(tc.repo, func(t *testing.T) {
			res, out, err := s.Ship(t, e2etest.SourceDir(t, tc.repo), tc.repo+"/app:lab")
			var runErr *runs.Error
			if !errors.As(err, &runErr) || runErr.Event != events.VerifyFailed || runErr.Failure.Class != tc.class {
				t.Fatalf("ship = %v, want verify.failed of class %s\n%s", err, tc.class, out)
			}
			f := runErr.Failure
			if !strings.HasPrefix(f.Path, tc.path) || !strings.Contains(f.Message, tc.message) || len(f.Mismatches) != tc.mismatches || f.Hint == "" {
				t.Fatalf("failure %+v", f)
			}
			names := e2etest.Names(s.RunEvents(t, res.RunID))
			if slices.Contains(names, "promoted") || slices.Contains(names, "promotion.approved") {
				t.Fatalf("a tampered image went on to promotion: %v", names)
			}
			if tc.repo == "moved" && !slices.Contains(names, "drift.detected") {
				t.Fatalf("no drift.detected for the moved tag: %v", names)
			}
		})
	}
}

func TestMalformedEventsAreDeadLetteredAndServicesKeepWorking(t *testing.T) {
	s, _ := e2etest.StartStack(t)
	ctx := context.Background()
	bad := map[string][]byte{
		events.BuildRequested.Subject("r0"): []byte("definitely not json"),
		events.BuildCompleted.Subject("r1"): []byte(`{"specversion":"1.0","id":"x","source":"/evil","type":"dev.digestline.build.completed.v1","runid":"r1","datacontenttype":"application/json","data":{"target":"nope"}}`),
		events.PushCompleted.Subject("r2"):  []byte(`{"specversion":"1.0","id":"y","source":"/evil","type":"dev.digestline.push.completed.v7","runid":"r2","data":{}}`),
		// A valid event filed under another run would put it in that run's history.
		events.BuildRequested.Subject("r3"): []byte(`{"specversion":"1.0","id":"z","source":"/evil","type":"dev.digestline.build.requested.v1","runid":"r4","datacontenttype":"application/json","data":{"source":{"kind":"dir","path":"/nope"},"target":"registry.local/app:1","spec":{}}}`),
	}
	for subj, body := range bad {
		if _, err := s.JetStream.Publish(ctx, subj, body); err != nil {
			t.Fatal(err)
		}
	}
	// The stream takes the contract's subjects alone: anything else is
	// refused to its publisher, not stored where nothing reads it.
	for _, subj := range []string{"digestline.build.requested", "digestline.build.started.r5", "digestline.build.requested.r5.extra"} {
		if _, err := s.JetStream.Publish(ctx, subj, []byte(`{}`)); !errors.Is(err, jetstream.ErrNoStreamResponse) {
			t.Errorf("publish on %s: %v, want it refused", subj, err)
		}
	}
	dlq, err := s.JetStream.Stream(ctx, events.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	// Each malformed event reaches the one service that reads its subject.
	e2etest.WaitFor(t, "the malformed events in the dead-letter stream", func() bool {
		info, err := dlq.Info(ctx)
		return err == nil && info.State.Msgs >= uint64(len(bad))
	})
	for subj, reason := range map[string]string{
		events.PushCompleted.Subject("r2"):  "unknown event type",
		events.BuildRequested.Subject("r3"): "published on " + events.BuildRequested.Subject("r3"),
	} {
		m, err := dlq.GetLastMsgForSubject(ctx, events.DeadLetterPrefix+subj)
		if err != nil {
			t.Fatalf("%s: %v", subj, err)
		}
		if got := m.Header.Get(bus.HeaderDLQReason); !strings.Contains(got, reason) {
			t.Errorf("dead-letter reason for %s: %q, want %q", subj, got, reason)
		}
	}

	if _, out, err := s.Ship(t, e2etest.SourceDir(t, "after poison"), "team/app:ok"); err != nil {
		t.Fatalf("the pipeline stopped working after malformed events: %v\n%s", err, out)
	}
}

func TestRestartKeepsRecordsAndImages(t *testing.T) {
	data := t.TempDir()
	s, stop := e2etest.StartStack(t, e2etest.WithDataDir(data))
	res, out, err := s.Ship(t, e2etest.SourceDir(t, "persist"), "team/app:lab")
	if err != nil {
		t.Fatalf("ship: %v\n%s", err, out)
	}
	stop()

	s2, _ := e2etest.StartStack(t, e2etest.WithDataDir(data), e2etest.WithRegistryAddr(s.RegistryAddr))
	var recs api.Page[events.Promotion]
	if s2.GetJSON(t, "/v1/promotions", &recs) != http.StatusOK || len(recs.Items) != 1 || recs.Items[0].Digest != res.Promotion.Digest {
		t.Fatalf("records after restart: %+v", recs.Items)
	}
	// What the gates rely on survived too: the digest was verified and is
	// in dev, so it goes on to staging (with the token dev keeps in its data).
	t.Setenv("DIGESTLINE_API_TOKEN", "")
	out, err = promoteCLI(t, s2, res.Promotion.Repository+"@"+res.Promotion.Digest, "staging", "--token-file", filepath.Join(data, "api-token"))
	if err != nil {
		t.Fatalf("promote after restart: %v\n%s", err, out)
	}
	var hist api.Page[api.HistoryEntry]
	if s2.GetJSON(t, "/v1/history?repo="+res.Promotion.Repository, &hist) != http.StatusOK || len(hist.Items) != 2 ||
		hist.Items[0].Promotion.Environment != "staging" || hist.Items[1].Promotion.Environment != "dev" {
		t.Fatalf("history after restart, newest first: %+v", hist)
	}
	ref, _ := name.NewDigest(s2.RegistryAddr + "/team/app@" + res.Promotion.Digest)
	if _, err := remote.Head(ref); err != nil {
		t.Fatalf("image gone after restart: %v", err)
	}
	if got := len(s2.RunEvents(t, res.RunID)); got == 0 {
		t.Fatal("run history gone after restart")
	}
}

func TestStandaloneBuildPushVerify(t *testing.T) {
	s, _ := e2etest.StartStack(t)
	layout := filepath.Join(t.TempDir(), "layout")
	run := func(args ...string) string { t.Helper(); return cli(t, args...) }
	out := run("build", e2etest.SourceDir(t, "standalone"), "-o", layout, "--entrypoint", "/bin/app", "--sbom")
	digest := strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	if !strings.HasPrefix(digest, "sha256:") || !strings.Contains(out, "attached application/spdx+json") {
		t.Fatalf("build printed %q", out)
	}
	ref := s.RegistryAddr + "/standalone/app"
	out = run("push", layout, ref+":v1")
	for _, want := range []string{"[STAGE] tag update OK", digest, "[STAGE] referrers OK 2 attached"} {
		if !strings.Contains(out, want) {
			t.Fatalf("push printed no %q:\n%s", want, out)
		}
	}
	out = run("push", layout, ref+":v1")
	if !strings.Contains(out, "0 uploaded") || !strings.Contains(out, "nothing to push") {
		t.Fatalf("second push printed:\n%s", out)
	}
	out = run("push", layout, ref+":v2", "--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(e2etest.PushStages()) {
		t.Fatalf("push --json printed %d lines, want one per stage:\n%s", len(lines), out)
	}
	for _, l := range lines {
		if err := events.ValidateData(events.PushStage, []byte(l)); err != nil {
			t.Fatalf("push --json line is not push.stage data: %v\n%s", err, l)
		}
	}
	out = run("verify", ref+"@"+digest)
	for _, line := range []string{"[VERIFY] digest match", "[VERIFY] manifest descriptor count: 3"} {
		if !strings.Contains(out, line) {
			t.Fatalf("verify printed:\n%s", out)
		}
	}

	// A tarball of the same tree builds the same image.
	tarball := filepath.Join(t.TempDir(), "src.tar")
	f, err := os.Create(tarball)
	if err != nil {
		t.Fatal(err)
	}
	if err := oci.WriteTar(context.Background(), f, e2etest.SourceDir(t, "standalone"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	out = run("build", tarball, "-o", filepath.Join(t.TempDir(), "from-tar"), "--entrypoint", "/bin/app", "--sbom")
	if got := strings.TrimSpace(strings.SplitN(out, "\n", 2)[0]); got != digest {
		t.Fatalf("the tarball built %s, the directory %s", got, digest)
	}

	// Bad input gets a clear error, not a crash.
	cmd := newRootCommand()
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	cmd.SetArgs([]string{"verify", ref + ":v1"})
	if err := cmd.ExecuteContext(context.Background()); err == nil || !strings.Contains(err.Error(), "digest reference") {
		t.Fatalf("verify by tag: %v", err)
	}
}

func TestShipWithSBOMAttachesAndVerifiesIt(t *testing.T) {
	s, _ := e2etest.StartStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	res, err := ship.Ship(ctx, s.Bus, ship.Request{Dir: e2etest.SourceDir(t, "sbom"), Target: s.RegistryAddr + "/team/sbom:lab",
		Spec: events.BuildSpec{Entrypoint: []string{"/bin/app"}, SBOM: true}}, &out)
	if err != nil {
		t.Fatalf("ship: %v\n%s", err, out.String())
	}
	for _, line := range []string{"[STAGE] referrers OK 2 attached (2 via referrers API", "[VERIFY] referrer application/spdx+json", "[VERIFY] referrer application/vnd.cyclonedx+json"} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("output lacks %q:\n%s", line, out.String())
		}
	}
	// The registry lists the SBOMs (and the promotion's attestation) for the
	// promoted digest, in the order they arrived: they are pushed at once.
	got := s.ReferrerTypes(t, "team/sbom", res.Promotion.Digest)
	slices.Sort(got)
	if !slices.Equal(got, []string{"application/spdx+json", "application/vnd.cyclonedx+json", reporter.ArtifactTypePromotion}) {
		t.Fatalf("referrers of the promoted digest: %v", got)
	}
}

// tarFiles reads a tar stream's regular files.
func tarFiles(t *testing.T, r io.Reader) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, _ := io.ReadAll(tr)
			out[h.Name] = string(b)
		}
	}
}

func TestAttachAnArtifactToAnImage(t *testing.T) {
	s, _ := e2etest.StartStack(t)
	res, out, err := s.Ship(t, e2etest.SourceDir(t, "attach"), "team/signed:1")
	if err != nil {
		t.Fatalf("ship: %v\n%s", err, out)
	}
	sig := filepath.Join(t.TempDir(), "signature.json")
	if err := os.WriteFile(sig, []byte(`{"signature":"test"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	subject := s.RegistryAddr + "/team/signed@" + res.Promotion.Digest
	cmd := newRootCommand()
	var buf bytes.Buffer
	cmd.SetOut(&buf)
	cmd.SetArgs([]string{"attach", subject, sig + ":application/json", "--artifact-type", "application/vnd.example.signature.v1+json"})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("attach: %v", err)
	}
	if !strings.Contains(buf.String(), "attached application/vnd.example.signature.v1+json sha256:") {
		t.Fatalf("attach printed %q", buf.String())
	}
	if got := s.ReferrerTypes(t, "team/signed", res.Promotion.Digest); !slices.Equal(got, []string{reporter.ArtifactTypePromotion, "application/vnd.example.signature.v1+json"}) {
		t.Fatalf("referrers %v", got)
	}

	// Attaching to something that is not there is a clear error.
	cmd = newRootCommand()
	cmd.SetOut(io.Discard)
	cmd.SetArgs([]string{"attach", s.RegistryAddr + "/team/signed@sha256:" + strings.Repeat("0", 64), sig, "--artifact-type", "x/y"})
	if err := cmd.ExecuteContext(context.Background()); err == nil || !strings.Contains(err.Error(), "push the image first") {
		t.Fatalf("attach to a missing subject: %v", err)
	}
}

func TestShipRefusesToMoveADriftedTag(t *testing.T) {
	s, _ := e2etest.StartStack(t)
	first, out, err := s.Ship(t, e2etest.SourceDir(t, "release 1"), "team/app:prod")
	if err != nil {
		t.Fatalf("ship: %v\n%s", err, out)
	}
	// The caller believes prod is still at some older digest: it has drifted.
	stale := "sha256:" + strings.Repeat("ab", 32)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var buf bytes.Buffer
	res, err := ship.Ship(ctx, s.Bus, ship.Request{Dir: e2etest.SourceDir(t, "release 2"), Target: s.RegistryAddr + "/team/app:prod",
		Tag: events.TagGuard{Expect: stale}}, &buf)
	var runErr *runs.Error
	if !errors.As(err, &runErr) || runErr.Event != events.PushFailed || runErr.Failure.Class != "conflict" {
		t.Fatalf("ship = %v\n%s", err, buf.String())
	}
	if !strings.Contains(buf.String(), "[DRIFT] tag prod points at "+first.Promotion.Digest+", expected "+stale) {
		t.Errorf("no drift line in:\n%s", buf.String())
	}
	var drift bool
	for _, ev := range s.RunEvents(t, res.RunID) {
		if n, _ := events.NameOfType(ev["type"].(string)); n == events.DriftDetected {
			d := e2etest.DataOf[events.Drift](t, ev)
			drift = d.Found == first.Promotion.Digest && d.Expected == stale && d.Tag == "prod"
		}
	}
	if !drift {
		t.Error("no drift.detected event with both digests")
	}
	ref, _ := name.ParseReference(s.RegistryAddr + "/team/app:prod")
	if d, err := remote.Head(ref); err != nil || d.Digest.String() != first.Promotion.Digest {
		t.Fatalf("prod moved to %v (%v) although the push was refused", d, err)
	}

	// With the right expectation the tag moves.
	buf.Reset()
	if _, err := ship.Ship(ctx, s.Bus, ship.Request{Dir: e2etest.SourceDir(t, "release 2"), Target: s.RegistryAddr + "/team/app:prod",
		Tag: events.TagGuard{Expect: first.Promotion.Digest}}, &buf); err != nil {
		t.Fatalf("ship with the right expectation: %v\n%s", err, buf.String())
	}
}

func TestShipJSONPrintsTheRunsEvents(t *testing.T) {
	s, _ := e2etest.StartStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var buf bytes.Buffer
	res, err := ship.ShipJSON(ctx, s.Bus, ship.Request{Dir: e2etest.SourceDir(t, "json"), Target: s.RegistryAddr + "/team/json:1"}, &buf)
	if err != nil {
		t.Fatalf("ship: %v\n%s", err, buf.String())
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var last events.Name
	for _, l := range lines {
		ev, name, err := events.Parse([]byte(l))
		if err != nil || events.RunID(ev) != res.RunID {
			t.Fatalf("line is not one of the run's events (%v): %s", err, l)
		}
		last = name
	}
	if last != events.Promoted || len(lines) < 12 {
		t.Fatalf("%d events ending with %s", len(lines), last)
	}
}
