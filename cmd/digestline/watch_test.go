package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/pkg/events"
	"github.com/nats-io/nats.go/jetstream"
)

// TestWatchAdmitsWhatIsPushedWhereNoNotificationComes: a watch reads a
// repository's tags every second — one tag list each time, conditional
// on its ETag — and admits each new digest of a tag in its semver range
// once (a tag pushed again to new content is a new digest), none of the
// tags that were there before it began, nor tags outside the range. A
// registry answering 429 is read less often until it answers again. A
// watch that keeps the newest image by build time admits only builds
// newer than the one it admitted.
func TestWatchAdmitsWhatIsPushedWhereNoNotificationComes(t *testing.T) {
	regAddr := fmt.Sprintf("127.0.0.1:%d", e2etest.FreePort(t))
	lists := &tagLists{limited: map[string]bool{"team/watched": true}} // its first reads wait for the image pushed before
	s := admissionStack(t, fmt.Sprintf("127.0.0.1:%d", e2etest.FreePort(t)), fmt.Sprintf(`watches:
  - {match: '%[1]s/team/watched', semver: '>= 1.0, < 2', every: 1s}
  - {match: '%[1]s/team/newest', newest: 1, every: 1s}
`, regAddr), e2etest.WithRegistryAddr(regAddr), e2etest.WithRegistryWrapper(lists.wrap))
	watched, newest := regAddr+"/team/watched", regAddr+"/team/newest"

	cranePush(t, watched+":1.0.0", "there before the watch")
	lists.limit("team/watched", false)
	awaitWatchRead(t, s, watched, 1) // its first read: what is there is not admitted
	v110 := cranePush(t, watched+":1.1.0", "1.1.0")
	cranePush(t, watched+":2.0.0", "out of range")
	cranePush(t, watched+":latest", "no version")
	awaitRecord(t, s, "dev", watched, v110)
	again := cranePush(t, watched+":1.1.0", "1.1.0, pushed again")
	awaitRecord(t, s, "dev", watched, again)
	if got := admissionsOf(t, s, watched); strings.Join(got, " ") != v110+" "+again {
		t.Errorf("admitted %v, want 1.1.0's two digests", got)
	}
	if lists.notModified.Load() == 0 {
		t.Error("no tag list was answered 304: the watch does not send If-None-Match")
	}

	// 429 for 6 s: read at most every 2, 4… s meanwhile, then as before.
	lists.limit("team/watched", true)
	before := lists.count("team/watched")
	time.Sleep(6 * time.Second)
	lists.limit("team/watched", false)
	if n := lists.count("team/watched") - before; n > 4 {
		t.Errorf("%d tag lists in 6 s of 429s: the watch does not back off", n)
	}
	after := cranePush(t, watched+":1.2.0", "after the limit")
	awaitRecord(t, s, "dev", watched, after)

	// Newest by build time.
	awaitWatchRead(t, s, newest, 1)
	build := func(tag, content, epoch string) string {
		t.Helper()
		t.Setenv("SOURCE_DATE_EPOCH", epoch)
		layout := filepath.Join(t.TempDir(), "layout")
		out := cli(t, "build", e2etest.SourceDir(t, content), "-o", layout, "--sign-key", "")
		cli(t, "push", layout, newest+":"+tag)
		return strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	}
	march := build("build-a", "built in March", "1772323200") // 2026-03-01
	build("build-b", "built in January", "1767225600")        // 2026-01-01: older than what is admitted
	awaitRecord(t, s, "dev", newest, march)
	may := build("build-c", "built in May", "1777593600") // 2026-05-01
	awaitRecord(t, s, "dev", newest, may)
	if got := admissionsOf(t, s, newest); strings.Join(got, " ") != march+" "+may {
		t.Errorf("the newest watch admitted %v, want the March and May builds", got)
	}
}

// tagLists wraps the registry: it counts each repository's tag lists,
// answers them with an ETag (304 to a matching If-None-Match), and
// answers 429 for a repository while it is limited.
type tagLists struct {
	mu          sync.Mutex
	counts      map[string]int
	limited     map[string]bool
	notModified atomic.Int64
}

func (l *tagLists) limit(repo string, on bool) { l.mu.Lock(); l.limited[repo] = on; l.mu.Unlock() }
func (l *tagLists) count(repo string) int      { l.mu.Lock(); defer l.mu.Unlock(); return l.counts[repo] }

func (l *tagLists) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		repo, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/v2/"), "/tags/list")
		if !ok || r.Method != http.MethodGet {
			next.ServeHTTP(w, r)
			return
		}
		l.mu.Lock()
		if l.counts == nil {
			l.counts = map[string]int{}
		}
		l.counts[repo]++
		limited := l.limited[repo]
		l.mu.Unlock()
		if limited {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		sum := sha256.Sum256(rec.Body.Bytes())
		etag := `"` + hex.EncodeToString(sum[:8]) + `"`
		if rec.Code == http.StatusOK && r.Header.Get("If-None-Match") == etag {
			l.notModified.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Set("ETag", etag)
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

// awaitWatchRead waits until the watch of repo has read its tags n times
// more (its state in the bus changed n times).
func awaitWatchRead(t *testing.T, s *e2etest.Stack, repo string, n int) {
	t.Helper()
	kv, err := s.JetStream.KeyValue(context.Background(), events.WatchesBucket)
	if err != nil {
		t.Fatal(err)
	}
	start := watchRevision(t, kv, repo)
	for deadline := time.Now().Add(30 * time.Second); watchRevision(t, kv, repo) < start+uint64(n); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the watch of %s did not read its tags %d times", repo, n)
		}
	}
}

func watchRevision(t *testing.T, kv jetstream.KeyValue, repo string) uint64 {
	t.Helper()
	e, err := kv.Get(context.Background(), watchKeyOf(repo))
	if err != nil {
		return 0
	}
	return e.Revision()
}

// watchKeyOf is the watch's key in WatchesBucket (as the builder names it).
func watchKeyOf(repo string) string { return "w." + base64.RawURLEncoding.EncodeToString([]byte(repo)) }

// admissionsOf lists the digests admitted into runs for repo, in order.
func admissionsOf(t *testing.T, s *e2etest.Stack, repo string) []string {
	t.Helper()
	st, err := s.JetStream.Stream(context.Background(), events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	c, err := st.OrderedConsumer(context.Background(), jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.AdmissionRequested.Filter()}})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		m, err := c.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return out
		}
		ev, _, err := events.ParseMsg(m.Subject(), m.Data())
		if err != nil {
			t.Fatal(err)
		}
		req, err := events.Decode[events.AdmissionRequest](ev)
		if err == nil && strings.HasPrefix(req.Target, repo+":") {
			out = append(out, req.Digest)
		}
	}
}
