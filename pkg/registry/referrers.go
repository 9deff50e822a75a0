package registry

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry/transport"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// FallbackTag is the tag that lists a subject's referrers on a registry
// without the referrers API: sha256-<hex>.
func FallbackTag(subject digest.Digest) string {
	return strings.ReplaceAll(subject.String(), ":", "-")
}

// fallbackAttempts bounds the read-merge-write loop against concurrent writers.
const fallbackAttempts = 8

// AddFallbackReferrers adds refs to the subject's fallback tag index without
// losing a concurrent writer's entry, in one read-merge-write for all of
// them. Each round reads the index, merges, and writes it back with If-Match
// (a registry that honours it refuses a stale write with 412, and the round
// repeats). Registries that ignore If-Match could still let a stale writer
// overwrite our entries after we wrote them, so the write is confirmed only
// after a settle delay longer than a read-merge-write round trip: a writer
// that read before our write has written by then, and if an entry is gone we
// merge it back.
func (r *Repo) AddFallbackReferrers(ctx context.Context, subject digest.Digest, refs ...v1.Descriptor) error {
	tag := FallbackTag(subject)
	for range fallbackAttempts {
		start := time.Now()
		idx, etag, err := r.fallbackIndex(ctx, subject)
		if err != nil {
			return err
		}
		if missing := missingFrom(idx.Manifests, refs); len(missing) > 0 {
			for _, ref := range missing {
				idx.Manifests = append(idx.Manifests, v1.Descriptor{MediaType: ref.MediaType, Digest: ref.Digest, Size: ref.Size, ArtifactType: ref.ArtifactType, Annotations: ref.Annotations})
			}
			body, err := json.Marshal(idx)
			if err != nil {
				return err
			}
			_, err = r.putManifest(ctx, tag, v1.MediaTypeImageIndex, body, etag)
			if errors.Is(err, failure.Conflict) {
				continue // changed since we read it: merge again
			}
			if err != nil {
				return err
			}
		}
		settle := min(max(3*time.Since(start), 20*time.Millisecond), 2*time.Second)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(settle + time.Duration(rand.Int64N(int64(settle)))):
		}
		check, _, err := r.fallbackIndex(ctx, subject)
		if err != nil {
			return err
		}
		if len(missingFrom(check.Manifests, refs)) == 0 {
			return nil
		}
	}
	return &failure.Error{Class: failure.Conflict, Err: fmt.Errorf("fallback tag %s kept changing under %d attempts to add %d referrers", tag, fallbackAttempts, len(refs)),
		Hint: "several writers are attaching artifacts to this image at once: retry the push"}
}

// Referrers lists the subject's referrers: through the referrers API when the
// registry has it, else from the fallback tag.
func (r *Repo) Referrers(ctx context.Context, subject digest.Digest) ([]v1.Descriptor, error) {
	return read(ctx, r.reads, "referrers "+subject.String(), func() ([]v1.Descriptor, error) { return r.referrers(ctx, subject) })
}

func (r *Repo) referrers(ctx context.Context, subject digest.Digest) ([]v1.Descriptor, error) {
	if r.listed == nil || !r.listed.noAPI.Load() {
		idx, ok, err := r.referrersAPI(ctx, subject)
		if err != nil {
			return nil, err
		}
		if ok {
			return r.withArtifactTypes(ctx, idx.Manifests)
		}
		if r.listed != nil {
			r.listed.noAPI.Store(true)
		}
	}
	if !r.MayHave(FallbackTag(subject)) {
		return nil, nil // not listed: no referrers kept under it
	}
	fb, _, err := r.fallbackIndex(ctx, subject)
	if errors.Is(err, errNoFallbackTag) {
		return nil, nil // nowhere to keep a list, so none was kept
	}
	if err != nil {
		return nil, err
	}
	return fb.Manifests, nil
}

// withArtifactTypes fills in the artifact type of referrers listed
// without theirs: a registry that takes it from the config's media type
// alone (go-containerregistry's, before OCI 1.1 settled on the manifest's
// artifactType) lists an artifact with an empty config as the empty
// descriptor's type. Each such referrer's manifest is read once.
func (r *Repo) withArtifactTypes(ctx context.Context, refs []v1.Descriptor) ([]v1.Descriptor, error) {
	for i, d := range refs {
		if d.ArtifactType != "" && d.ArtifactType != oci.MediaTypeEmptyJSON {
			continue
		}
		body, _, err := r.GetManifest(ctx, d.Digest.String())
		if err != nil {
			return nil, err
		}
		var m struct {
			ArtifactType string        `json:"artifactType"`
			Config       v1.Descriptor `json:"config"`
		}
		if json.Unmarshal(body, &m) == nil {
			refs[i].ArtifactType = cmp.Or(m.ArtifactType, m.Config.MediaType)
		}
	}
	return refs, nil
}

// referrersAPI asks the referrers API; ok is false when the registry has
// none. Only an OCI image index from the registry itself is an answer:
// a 404, a web page (200 text/html), a redirect to another host (GHCR and
// Docker Hub send unknown API paths to their web sites) or JSON that is no
// index all mean "no referrers API here".
func (r *Repo) referrersAPI(ctx context.Context, subject digest.Digest) (v1.Index, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.repoURL("referrers", subject.String()), nil)
	if err != nil {
		return v1.Index{}, false, &failure.Error{Class: failure.Schema, Err: err, Hint: "the reference is malformed"}
	}
	req.Header.Set("Accept", v1.MediaTypeImageIndex)
	noRedirects := *r.client // a redirect is an answer here, not a way to one
	noRedirects.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := noRedirects.Do(req)
	if err != nil {
		return v1.Index{}, false, r.classifyTransport(ctx, err)
	}
	defer transport.Drain(resp)
	switch {
	case resp.StatusCode == http.StatusNotFound, resp.StatusCode >= 300 && resp.StatusCode < 400:
		return v1.Index{}, false, nil
	case resp.StatusCode != http.StatusOK:
		return v1.Index{}, false, transport.Classify(resp, r.name)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != v1.MediaTypeImageIndex {
		return v1.Index{}, false, nil
	}
	var idx v1.Index
	if err := json.NewDecoder(io.LimitReader(resp.Body, oci.MaxManifestSize)).Decode(&idx); err != nil || (idx.MediaType != "" && idx.MediaType != v1.MediaTypeImageIndex) {
		return v1.Index{}, false, nil
	}
	return idx, true, nil
}

// errNoFallbackTag: the registry resolves the fallback tag sha256-<hex> to
// the manifest sha256:<hex> itself, as GitLab's does, so no referrers list
// can be kept under it.
var errNoFallbackTag = errors.New("the registry resolves the fallback tag to the subject itself")

// fallbackIndex reads the subject's fallback tag index (an empty one when
// there is none) and its ETag, if the registry sends one. What the tag
// holds is a referrers list only if it is an index of manifests and not the
// subject itself.
func (r *Repo) fallbackIndex(ctx context.Context, subject digest.Digest) (v1.Index, string, error) {
	tag := FallbackTag(subject)
	empty := v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex, Manifests: []v1.Descriptor{}}
	resp, err := r.do(ctx, http.MethodGet, r.repoURL("manifests", tag), nil, http.Header{"Accept": {v1.MediaTypeImageIndex}})
	if err != nil {
		return v1.Index{}, "", err
	}
	defer transport.Drain(resp)
	if resp.StatusCode == http.StatusNotFound {
		return empty, "", nil
	}
	if resp.StatusCode != http.StatusOK {
		return v1.Index{}, "", transport.Classify(resp, r.name)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, oci.MaxManifestSize))
	if err != nil {
		return v1.Index{}, "", r.classifyTransport(ctx, err)
	}
	if digest.FromBytes(body) == subject {
		return v1.Index{}, "", &failure.Error{Class: failure.Schema, Err: fmt.Errorf("fallback tag %s: %w", tag, errNoFallbackTag),
			Hint: fmt.Sprintf("%s has neither the referrers API nor a place for the fallback tag (GitLab's registry reads sha256-<hex> as the digest): push artifacts with a subject to a registry that has one, or attach them under tags of their own", r.name.RegistryStr())}
	}
	var idx v1.Index
	if err := json.Unmarshal(body, &idx); err != nil {
		return v1.Index{}, "", &failure.Error{Class: failure.Schema, Err: fmt.Errorf("fallback tag %s is not an index: %w", tag, err),
			Hint: "something else is using the fallback tag: remove it or push with a registry that has the referrers API"}
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if (mt != "" && mt != v1.MediaTypeImageIndex) || (idx.MediaType != "" && idx.MediaType != v1.MediaTypeImageIndex) {
		return empty, "", nil // not a referrers list: some other manifest under that tag
	}
	idx.Manifests = slices.DeleteFunc(idx.Manifests, func(d v1.Descriptor) bool { return d.Digest.Validate() != nil || !oci.IsManifest(d.MediaType) })
	return idx, resp.Header.Get("ETag"), nil
}

// missingFrom returns the refs that ds does not list.
func missingFrom(ds, refs []v1.Descriptor) []v1.Descriptor {
	var missing []v1.Descriptor
	for _, ref := range refs {
		if !hasDescriptor(ds, ref.Digest) {
			missing = append(missing, ref)
		}
	}
	return missing
}

func hasDescriptor(ds []v1.Descriptor, d digest.Digest) bool {
	for _, x := range ds {
		if x.Digest == d {
			return true
		}
	}
	return false
}
