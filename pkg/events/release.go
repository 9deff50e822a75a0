package events

import (
	"fmt"
	"regexp"
	"time"
)

// A release promotes several images that were tested together as one
// unit: every gate for every image first, then every tag moves; if one
// move fails, the tags moved before it are put back. Its run is
// release.requested → release.approved → release.moved →
// release.verified → promoted (one event, listing every image), or it
// ends as any promotion does (promotion.rejected, superseded, push.failed,
// verify.failed), naming the image.

// ReleaseImage is one image of a release, by digest.
type ReleaseImage struct {
	Repository string `json:"repository" jsonschema:"minLength=1"`
	Digest     string `json:"digest" jsonschema:"minLength=1"`
}

// Ref is the image's repository@digest.
func (i ReleaseImage) Ref() string { return i.Repository + "@" + i.Digest }

// ReleaseRequest is the data of release.requested.
type ReleaseRequest struct {
	// Name names the release, as a person says it (shop-2026.12.1): its
	// record in each environment is kept by name.
	Name        string         `json:"name" jsonschema:"minLength=1,maxLength=100"`
	To          string         `json:"to" jsonschema:"minLength=1"`
	Images      []ReleaseImage `json:"images" jsonschema:"minItems=1"`
	RequestedBy string         `json:"requestedBy,omitempty"`
	// Rollback, when set, puts the environment back to where it was
	// before the release named Name: Images are the digests it held.
	Rollback *Rollback `json:"rollback,omitempty"`
}

// releaseName is what a release may be called.
var releaseName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// Check reports what is wrong with a release request before any gate: a
// name, and each repository once (an environment holds one digest of it).
func (r ReleaseRequest) Check() error {
	if !releaseName.MatchString(r.Name) {
		return fmt.Errorf("release name %q: want letters, digits, '.', '_' or '-', at most 100", r.Name)
	}
	if len(r.Images) == 0 {
		return fmt.Errorf("release %s names no image", r.Name)
	}
	seen := map[string]bool{}
	for _, im := range r.Images {
		if seen[im.Repository] {
			return fmt.Errorf("release %s names %s twice: an environment holds one digest of a repository", r.Name, im.Repository)
		}
		seen[im.Repository] = true
	}
	return nil
}

// ReleaseApproval is the data of release.approved: every gate passed for
// every image, and the pusher is to move their tags, in order.
type ReleaseApproval struct {
	Name        string     `json:"name" jsonschema:"minLength=1"`
	Environment string     `json:"environment" jsonschema:"minLength=1"`
	Images      []Approval `json:"images" jsonschema:"minItems=1"`
	RequestedAt time.Time  `json:"requestedAt,omitzero"`
}

// ReleaseMoves is the data of release.moved: every image's tag moved
// (each as push.completed says for one promotion), to be verified again.
type ReleaseMoves struct {
	Name        string       `json:"name" jsonschema:"minLength=1"`
	Environment string       `json:"environment" jsonschema:"minLength=1"`
	Images      []PushResult `json:"images" jsonschema:"minItems=1"`
	RequestedAt time.Time    `json:"requestedAt,omitzero"`
}

// ReleaseVerification is the data of release.verified: every image proven
// where its tag now points.
type ReleaseVerification struct {
	Name        string         `json:"name" jsonschema:"minLength=1"`
	Environment string         `json:"environment" jsonschema:"minLength=1"`
	Images      []VerifyResult `json:"images" jsonschema:"minItems=1"`
	RequestedAt time.Time      `json:"requestedAt,omitzero"`
}

// ReleaseRecord is a release on a promotion: its name, and on the
// release's own event and record every image's promotion.
type ReleaseRecord struct {
	Name   string      `json:"name" jsonschema:"minLength=1"`
	Images []Promotion `json:"images,omitempty"`
}

// ReleaseFailure is what became of a release that failed at one image:
// Image is it (repository@digest); PutBack are the images whose tags had
// moved and were put back where they were, and Left those whose tags
// could not be (with why), for a person to look at.
type ReleaseFailure struct {
	Name        string   `json:"name" jsonschema:"minLength=1"`
	Environment string   `json:"environment" jsonschema:"minLength=1"`
	Image       string   `json:"image" jsonschema:"minLength=1"`
	PutBack     []string `json:"putBack,omitempty"`
	Left        []string `json:"left,omitempty"`
}
