package registry

import (
	"fmt"

	"github.com/digestline/digestline/pkg/events"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
)

// PushOption configures one push.
type PushOption func(*pushOptions)

type pushOptions struct {
	policy   TagPolicy
	expect   digest.Digest
	progress Progress
	prove    Proof
	mounts   []name.Repository // MountFrom
	present  bool              // ManifestsPresent
}

// ManifestsPresent tells the push that the target repository holds the
// graph's manifests: the caller has just read them from there (a
// promotion within one repository). The manifest check then asks about
// the tag only: a round trip less.
func ManifestsPresent() PushOption { return func(o *pushOptions) { o.present = true } }

// MountFrom names a repository that holds the artifact being pushed: when
// it is in the destination's registry, the push mounts the artifact's
// blobs from there instead of uploading them (a promotion between two
// places of one registry, a copy within it). A repository elsewhere, or
// that no longer holds it, offers nothing and costs nothing.
func MountFrom(repo name.Repository) PushOption {
	return func(o *pushOptions) { o.mounts = append(o.mounts, repo) }
}

// mountFrom is where the artifact root may be mounted from in target's
// registry.
func (o pushOptions) mountFrom(target name.Repository, root digest.Digest) []baseRef {
	var out []baseRef
	for _, r := range o.mounts {
		if r.RegistryStr() == target.RegistryStr() && r.RepositoryStr() != target.RepositoryStr() {
			out = append(out, baseRef{repo: r.RepositoryStr(), digest: root, whole: true})
		}
	}
	return out
}

// WithTagPolicy sets how the tag update treats a tag that points elsewhere.
func WithTagPolicy(p TagPolicy) PushOption { return func(o *pushOptions) { o.policy = p } }

// ExpectTag says which digest the tag should point at before the push; with
// TagFail, any other is a conflict (drift) and the tag is not moved.
func ExpectTag(d digest.Digest) PushOption { return func(o *pushOptions) { o.expect = d } }

// VerifyBeforeTag runs proof as a stage of the push, "verify", after the
// referrers and before the tag update: the tag moves only once what it
// will point at, and everything attached to it, is proven where it is.
// The proof hears of each blob as it arrives. A failed proof fails the
// push, and the tag stays where it was.
func VerifyBeforeTag(proof Proof) PushOption { return func(o *pushOptions) { o.prove = proof } }

// WithProgress reports upload progress to fn. Without it, blob files are
// handed to the HTTP transport untouched, so the kernel can send them
// without copying (sendfile); with it, every read is counted first.
func WithProgress(fn Progress) PushOption { return func(o *pushOptions) { o.progress = fn } }

// TagOptions turns a build's or promotion's tag guard (events.TagGuard)
// into push options: its policy, and the digest the tag should be at.
func TagOptions(g events.TagGuard) ([]PushOption, error) {
	policy, err := ParseTagPolicy(g.Policy)
	if err != nil {
		return nil, err
	}
	opts := []PushOption{WithTagPolicy(policy)}
	if g.Expect != "" {
		d, err := digest.Parse(g.Expect)
		if err != nil {
			return nil, fmt.Errorf("tag.expect: %w", err)
		}
		opts = append(opts, ExpectTag(d))
	}
	return opts, nil
}
