package evidence

import (
	"strings"
	"sync"

	"github.com/digestline/digestline/pkg/sign"
	"github.com/opencontainers/go-digest"
)

// Cache remembers the referrers a process has proven, so that it reads and
// proves each only once: a referrer is content-addressed, so its proof
// with the same keys about the same subject never changes. The verifier
// proves an image's evidence after the push and again after the tag
// moves, and the reporter reads it for the policy and again for the
// verification summary; with a cache each reads the listing, and only new
// referrers. Only proofs that held are remembered. A nil *Cache remembers
// nothing. It is safe for concurrent use.
type Cache struct {
	mu      sync.Mutex
	proofs  map[string]proof
	order   []string // oldest first, to bound the cache
	entries int
}

// NewCache returns a cache of at most entries proofs (0: 4096, a few MiB
// at most: a proof is a few hundred bytes to a few KiB).
func NewCache(entries int) *Cache {
	if entries <= 0 {
		entries = 4096
	}
	return &Cache{proofs: map[string]proof{}, entries: entries}
}

func cacheKey(referrer, subject digest.Digest, keys []sign.Verifier) string {
	var b strings.Builder
	b.WriteString(referrer.String())
	b.WriteString(" ")
	b.WriteString(subject.String())
	for _, k := range keys {
		b.WriteString(" ")
		b.WriteString(k.KeyID())
	}
	return b.String()
}

func (c *Cache) get(key string) (proof, bool) {
	if c == nil {
		return proof{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.proofs[key]
	return p, ok
}

func (c *Cache) put(key string, p proof) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.proofs[key]; ok {
		return
	}
	if len(c.order) == c.entries {
		delete(c.proofs, c.order[0])
		c.order = c.order[1:]
	}
	c.proofs[key], c.order = p, append(c.order, key)
}
