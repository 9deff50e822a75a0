package registry

import (
	"context"
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
	mover    TagMover          // MoveTagVia
	seen     digest.Digest     // SeenAt
	seenSet  bool
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

// TagMover moves a push's tag in the order the pipeline keeps for it
// (package tags): it calls move once no other run is moving the tag, with
// where the pipeline left the tag (nil when it never moved it), and
// returns move's error; or it refuses without calling move, with an error
// that has an Overtaken() string method when a newer request moved the
// tag already. tag is the tag's full name. It returns where the run moved
// the tag from (a run that moved it before, redelivered, gets the same
// answer).
type TagMover func(ctx context.Context, tag string, move func(ctx context.Context, known []string) (from string, err error)) (from string, err error)

// MoveTagVia moves the tag through m. A tag found where the pipeline left
// it (or at the digest being pushed) moves, unless the push was told to
// expect another digest (ExpectTag): a run of the pipeline moved it in
// between, in order. (A tag meant never to move once set is not to be
// ordered: push it with TagIfAbsent and without a mover.)
// A push that m refuses as overtaken skips the tag update and ends with
// m's error, once the referrers are pushed.
func MoveTagVia(m TagMover) PushOption { return func(o *pushOptions) { o.mover = m } }

// SeenAt says where the tag was seen when its move was decided ("":
// nowhere). With MoveTagVia, the tag moves from there, or from where a run
// of the pipeline moved it since; from anywhere else is drift.
func SeenAt(d digest.Digest) PushOption {
	return func(o *pushOptions) { o.seen, o.seenSet = d, true }
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
