package registry

import (
	"fmt"
	"slices"

	"github.com/digestline/digestline/pkg/failure"
	"github.com/opencontainers/go-digest"
)

// TagPolicy decides whether the tag update stage may move a tag that points
// at another digest than the one being pushed.
type TagPolicy string

// The tag policies.
const (
	// TagFail moves the tag only from the expected previous digest (when one
	// is given; without one it behaves as TagForce) and fails otherwise.
	TagFail TagPolicy = "fail"
	// TagForce moves the tag wherever it points.
	TagForce TagPolicy = "force"
	// TagIfAbsent sets the tag only if it does not exist yet.
	TagIfAbsent TagPolicy = "if-absent"
)

// ParseTagPolicy parses a policy name; "" is TagFail.
func ParseTagPolicy(s string) (TagPolicy, error) {
	switch p := TagPolicy(s); p {
	case "":
		return TagFail, nil
	case TagFail, TagForce, TagIfAbsent:
		return p, nil
	}
	return "", fmt.Errorf("tag policy %q: want fail, force or if-absent", s)
}

// guarded reports whether the policy can refuse to move a tag.
func (o pushOptions) guarded() bool {
	return o.policy == TagIfAbsent || (o.policy == TagFail && o.expect != "")
}

// checkTag applies the policy to a tag found at found (zero: absent) before
// moving it to root. It returns a conflict *failure.Error carrying the drift when the
// tag must not move.
func (o pushOptions) checkTag(tag string, found, root digest.Digest) error {
	conflict := func(d failure.Drift, hint string) error {
		return &failure.Error{Class: failure.Conflict, Drift: &d, Hint: hint,
			Err: fmt.Errorf("tag %s points at %s, expected %s", tag, orNone(d.Found), orNone(d.Expected))}
	}
	switch {
	case found == "" || found == root:
		return nil
	case o.policy == TagIfAbsent:
		return conflict(failure.Drift{Tag: tag, Found: found},
			"the tag exists and points elsewhere: push with --tag-policy force to move it, or use a new tag")
	case o.policy == TagFail && o.expect != "" && found != o.expect:
		return conflict(failure.Drift{Tag: tag, Expected: o.expect, Found: found},
			fmt.Sprintf("someone moved the tag since you looked: inspect %s, then push with --expect %s (or --tag-policy force)", found, found))
	}
	return nil
}

// checkTagKnown is checkTag for a tag the pipeline orders (MoveTagVia).
// A digest the caller expects (ExpectTag) holds as it is; otherwise the
// tag may move from where the pipeline's runs left it (known: a run moved
// it, in order, since this one's move was decided), else from where it
// was seen (SeenAt), and from anywhere else is drift.
func (o pushOptions) checkTagKnown(tag string, found, root digest.Digest, known []string) error {
	if o.policy == TagForce || found == "" || found == root {
		return nil
	}
	if o.expect != "" || known == nil && !o.seenSet {
		return o.checkTag(tag, found, root)
	}
	if known == nil {
		known = []string{o.seen.String()}
	}
	if slices.Contains(known, found.String()) {
		return nil
	}
	expected := digest.Digest(known[0])
	return &failure.Error{Class: failure.Conflict, Drift: &failure.Drift{Tag: tag, Expected: expected, Found: found},
		Err:  fmt.Errorf("tag %s points at %s, but the pipeline left it at %s", tag, found, orNone(expected)),
		Hint: fmt.Sprintf("someone moved the tag outside the pipeline: find out who, then put it back on %s (or delete it) and run again", orNone(expected))}
}

func orNone(d digest.Digest) string {
	if d == "" {
		return "nothing"
	}
	return d.String()
}
