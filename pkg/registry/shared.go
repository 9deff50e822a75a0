package registry

import (
	"context"
	"sync"
	"sync/atomic"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Shared returns r reading each manifest by digest, each small blob and each
// referrers list at most once for everyone reading through it at the same
// time: a verification proves an image's bytes and, beside it, its
// signatures, and both read the same artifacts. What failed is read again
// by the next reader; what succeeded is kept as long as the returned Repo,
// and its bytes are the same slice for every reader: read, never changed.
func (r *Repo) Shared() *Repo {
	s := *r
	s.reads = &sharedReads{}
	return &s
}

// WithTags returns r knowing every tag its repository has: tags, a list
// read just now by a reader that lists them anyway (garbage collection
// walks every tagged digest's tree). It then asks for cosign's tags and a
// referrers fallback tag only when they are listed, and asks the
// referrers API once: a registry without one is not asked again.
func (r *Repo) WithTags(tags []string) *Repo {
	s := *r
	s.listed = &listedTags{tags: make(map[string]bool, len(tags))}
	for _, t := range tags {
		s.listed.tags[t] = true
	}
	return &s
}

// listedTags is what a WithTags Repo knows of its repository.
type listedTags struct {
	tags  map[string]bool
	noAPI atomic.Bool // the registry answered that it has no referrers API
}

// MayHave reports whether the repository may have tag: it is listed, or
// r does not know its tags.
func (r *Repo) MayHave(tag string) bool { return r.listed == nil || r.listed.tags[tag] }

// sharedReads are the reads of a Shared Repo (or of a push), by what
// they read. The zero value is ready to use.
type sharedReads struct {
	mu    sync.Mutex
	calls map[string]*sharedRead
}

type sharedRead struct {
	done chan struct{}
	val  any
	err  error
	cut  bool // the first caller's context ended before its read did
}

// read returns what fetch returns for key: fetched by the first caller,
// waited for by those that come while it runs, kept for later ones when
// it succeeded. A caller whose wait ends in the first caller's own end
// (its context cancelled, or past its deadline) reads again itself.
func read[T any](ctx context.Context, s *sharedReads, key string, fetch func() (T, error)) (T, error) {
	if s == nil {
		return fetch()
	}
	s.mu.Lock()
	c, waiting := s.calls[key]
	if !waiting {
		c = &sharedRead{done: make(chan struct{})}
		if s.calls == nil {
			s.calls = map[string]*sharedRead{}
		}
		s.calls[key] = c
	}
	s.mu.Unlock()
	if !waiting {
		v, err := fetch()
		c.val, c.err, c.cut = v, err, err != nil && ctx.Err() != nil
		if err != nil {
			s.mu.Lock()
			delete(s.calls, key)
			s.mu.Unlock()
		}
		close(c.done)
		return v, err
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
	if c.cut && ctx.Err() == nil {
		return read(ctx, s, key, fetch)
	}
	if c.err != nil {
		var zero T
		return zero, c.err
	}
	return c.val.(T), nil
}

// manifestRead is what GetManifest returns.
type manifestRead struct {
	body []byte
	desc v1.Descriptor
}
