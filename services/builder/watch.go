package builder

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/nats-io/nats.go/jetstream"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// A watch admits what is pushed to a repository whose registry sends no
// notifications: it reads the repository's tags every interval (one tag
// list, conditional where the registry answers with an ETag), and admits
// each new digest of a tag its rule takes, once.

// WatchRule watches one repository (Match: registry/repository, no
// pattern) and admits its tags as an AdmissionRule says.
type WatchRule struct {
	AdmissionRule
	// Every is how often the tags are read (default 1m). A registry that
	// answers 429 is read less often, until it answers again.
	Every string `json:"every"`
	// Semver is a version range (">= 1.2, < 2", "^1.4", "~1.4.2"): only
	// tags that are versions in it are admitted.
	Semver string `json:"semver"`
	// Newest admits only the newest N tags the rule takes: by version
	// with Semver, else by the image's build time (its config's created).
	// A new watch with Newest admits them at once; without, it admits
	// only what is pushed after its first read.
	Newest int `json:"newest"`

	every  time.Duration
	semver *semver.Constraints
	repo   name.Repository
}

// load checks the watch and reads its keys.
func (w *WatchRule) load() error {
	if err := w.AdmissionRule.load(); err != nil {
		return err
	}
	var err error
	if w.repo, err = name.NewRepository(w.Match, name.WeakValidation); err != nil {
		return fmt.Errorf("match %q: a watch names one repository, registry/repository: %w", w.Match, err)
	}
	w.every = time.Minute
	if w.Every != "" {
		if w.every, err = time.ParseDuration(w.Every); err != nil || w.every < time.Second {
			return fmt.Errorf("every %q: want a duration of a second or more, e.g. 1m", w.Every)
		}
	}
	if w.Semver != "" {
		if w.semver, err = semver.NewConstraint(w.Semver); err != nil {
			return fmt.Errorf("semver %q: %w", w.Semver, err)
		}
	}
	if w.Newest < 0 {
		return fmt.Errorf("newest %d: want 0 (every tag) or more", w.Newest)
	}
	return nil
}

// watchState is what a watch keeps between reads, in WatchesBucket.
type watchState struct {
	ETag string   `json:"etag,omitempty"`
	Tags []string `json:"tags,omitempty"` // the list as last read, for an answer of 304
	// Admitted is the digest each tag was last admitted at (or found at
	// by the watch's first read, without Newest).
	Admitted map[string]string `json:"admitted"`
	// Created is each digest's build time, read once (Newest without Semver).
	Created map[string]time.Time `json:"created,omitempty"`
}

// Watch reads every watch's repository on its interval and admits what
// is new, until ctx is cancelled. Each watch has its own goroutine; the
// state is shared through the bus, so replicas of the builder admit each
// digest once.
func (h *Webhooks) Watch(ctx context.Context, js jetstream.JetStream, log *slog.Logger) error {
	if len(h.cfg.Watches) == 0 {
		return nil
	}
	kv, err := js.KeyValue(ctx, events.WatchesBucket)
	if err != nil {
		return fmt.Errorf("open %s (is the bus provisioned?): %w", events.WatchesBucket, err)
	}
	done := make(chan struct{}, len(h.cfg.Watches))
	for _, w := range h.cfg.Watches {
		go func() {
			defer func() { done <- struct{}{} }()
			h.watch(ctx, kv, w, log)
		}()
	}
	for range h.cfg.Watches {
		<-done
	}
	return nil
}

// watch reads w's repository on its interval until ctx is cancelled: a
// failure is logged and tried again at the next read, later after a 429.
func (h *Webhooks) watch(ctx context.Context, kv jetstream.KeyValue, w WatchRule, log *slog.Logger) {
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		n, err := h.poll(ctx, kv, w)
		switch {
		case err == nil:
			wait = w.every
			if n > 0 {
				log.Info(fmt.Sprintf("watch %s: %d new digests admitted", w.Match, n))
			}
		case ctx.Err() != nil:
			return
		case failure.As(err).Class == failure.RateLimit:
			wait = min(2*max(wait, w.every), 16*w.every)
			log.Warn(fmt.Sprintf("watch %s: the registry limits its rate: reading again in %s: %v", w.Match, wait, err))
		default:
			wait = w.every
			log.Warn(fmt.Sprintf("watch %s: %v (reading again in %s)", w.Match, err, wait))
		}
	}
}

// poll reads w's tags once and admits each new digest its rule takes; it
// returns how many it admitted.
func (h *Webhooks) poll(ctx context.Context, kv jetstream.KeyValue, w WatchRule) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, max(w.every, time.Minute))
	defer cancel()
	key := "w." + base64.RawURLEncoding.EncodeToString([]byte(w.repo.Name()))
	st, rev, err := loadWatch(ctx, kv, key)
	if err != nil {
		return 0, err
	}
	repo, err := h.registry.Open(ctx, w.repo, false)
	if err != nil {
		return 0, err
	}
	tags, etag, err := repo.TagsIfChanged(ctx, 0, st.ETag)
	if errors.Is(err, registry.ErrUnchanged) {
		tags = st.Tags
	} else if err != nil {
		return 0, err
	}
	st.ETag, st.Tags = etag, tags
	found, err := h.watched(ctx, repo, w, tags, &st)
	if err != nil {
		return 0, err
	}
	first, admitted := rev == 0, 0
	for _, f := range found {
		if st.Admitted[f.tag] == f.digest {
			continue
		}
		if first && w.Newest == 0 { // what was there before the watch: not admitted
			st.Admitted[f.tag] = f.digest
			continue
		}
		req := events.AdmissionRequest{Target: w.repo.Tag(f.tag).Name(), Digest: f.digest, PromoteTo: w.PromoteTo, Sender: events.SenderWatch,
			Delivery: w.repo.Name() + ":" + f.tag + "@" + f.digest, Rule: w.Match, RequestedAt: time.Now().UTC(),
			Trust: events.Trust{Keys: w.pems, Provenance: w.Provenance, WaitSeconds: int(w.wait / time.Second)}}
		if _, err := h.publishEvent(ctx, events.SenderWatch+"/"+req.Delivery, events.AdmissionRequested, req.Target, req); err != nil {
			return admitted, err
		}
		st.Admitted[f.tag] = f.digest
		admitted++
	}
	return admitted, saveWatch(ctx, kv, key, st, rev)
}

// tagDigest is a tag the watch takes, and where it points.
type tagDigest struct{ tag, digest string }

// watched is what the watch takes of tags, newest first when it keeps the
// newest only, each with its digest now.
func (h *Webhooks) watched(ctx context.Context, repo *registry.Repo, w WatchRule, tags []string, st *watchState) ([]tagDigest, error) {
	var taken []string
	versions := map[string]*semver.Version{}
	for _, t := range tags {
		if ok, _ := w.admits(t); !ok {
			continue
		}
		if w.semver != nil {
			v, err := semver.NewVersion(t)
			if err != nil || !w.semver.Check(v) {
				continue
			}
			versions[t] = v
		}
		taken = append(taken, t)
	}
	if w.semver != nil {
		slices.SortFunc(taken, func(a, b string) int { return versions[b].Compare(versions[a]) })
		if w.Newest > 0 {
			taken = taken[:min(w.Newest, len(taken))]
		}
	}
	out := make([]tagDigest, 0, len(taken))
	for _, t := range taken {
		d, found, err := repo.HeadManifest(ctx, t)
		if err != nil {
			return nil, err
		}
		if found { // deleted since the list was read: nothing to admit
			out = append(out, tagDigest{t, d.Digest.String()})
		}
	}
	if w.semver != nil || w.Newest == 0 {
		return out, nil
	}
	return newestBuilt(ctx, repo, out, w.Newest, st)
}

// newestBuilt keeps the n of found whose images were built last (their
// config's created), reading each digest's build time once.
func newestBuilt(ctx context.Context, repo *registry.Repo, found []tagDigest, n int, st *watchState) ([]tagDigest, error) {
	if st.Created == nil {
		st.Created = map[string]time.Time{}
	}
	for _, f := range found {
		if _, ok := st.Created[f.digest]; ok {
			continue
		}
		at, err := createdAt(ctx, repo, f.digest)
		if err != nil {
			return nil, err
		}
		st.Created[f.digest] = at
	}
	slices.SortStableFunc(found, func(a, b tagDigest) int { return st.Created[b.digest].Compare(st.Created[a.digest]) })
	kept := found[:min(n, len(found))]
	for d := range st.Created { // only what is still tagged is remembered
		if !slices.ContainsFunc(found, func(f tagDigest) bool { return f.digest == d }) {
			delete(st.Created, d)
		}
	}
	return kept, nil
}

// createdAt is when the image at d was built, as its config says (an
// index's: its first image's).
func createdAt(ctx context.Context, repo *registry.Repo, d string) (time.Time, error) {
	for range 2 {
		body, _, err := repo.GetManifest(ctx, d)
		if err != nil {
			return time.Time{}, err
		}
		var m struct {
			Config    *v1.Descriptor  `json:"config"`
			Manifests []v1.Descriptor `json:"manifests"`
		}
		if err := json.Unmarshal(body, &m); err != nil {
			return time.Time{}, &failure.Error{Class: failure.Schema, Err: err, Hint: "the manifest is not JSON"}
		}
		if m.Config == nil {
			if len(m.Manifests) == 0 {
				return time.Time{}, nil
			}
			d = m.Manifests[0].Digest.String()
			continue
		}
		raw, err := repo.ReadBlob(ctx, *m.Config)
		if err != nil {
			return time.Time{}, err
		}
		var cfg struct {
			Created time.Time `json:"created"`
		}
		_ = json.Unmarshal(raw, &cfg) // an artifact's config has no created: it sorts last
		return cfg.Created, nil
	}
	return time.Time{}, nil
}

func loadWatch(ctx context.Context, kv jetstream.KeyValue, key string) (watchState, uint64, error) {
	st := watchState{Admitted: map[string]string{}}
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return st, 0, nil
	}
	if err != nil {
		return st, 0, fmt.Errorf("read the watch's state: %w", err)
	}
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return watchState{Admitted: map[string]string{}}, e.Revision(), nil // unreadable: read anew
	}
	if st.Admitted == nil {
		st.Admitted = map[string]string{}
	}
	return st, e.Revision(), nil
}

// saveWatch stores st if nobody did since rev; a replica that did admitted
// the same digests (their events' ids are the same), so its state stands.
func saveWatch(ctx context.Context, kv jetstream.KeyValue, key string, st watchState, rev uint64) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	_, _, err = bus.PutRevision(ctx, kv, key, b, rev) // raced: the other replica's state stands
	return err
}
