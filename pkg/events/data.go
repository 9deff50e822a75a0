package events

import (
	"cmp"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
)

// dataTypes maps every event to a zero value of its data type: the schema
// generator and the decoder both read it, so an event without a Go type (or
// the reverse) cannot exist.
var dataTypes = map[Name]any{
	BuildRequested:      BuildRequest{},
	BuildCompleted:      BuildResult{},
	BuildFailed:         Failure{},
	PushStage:           StageReport{},
	PushCompleted:       PushResult{},
	PushFailed:          Failure{},
	VerifyCompleted:     VerifyResult{},
	VerifyFailed:        Failure{},
	DriftDetected:       Drift{},
	PromotionRequested:  PromotionRequest{},
	PromotionApproved:   Approval{},
	Promoted:            Promotion{},
	PromotionRejected:   Rejection{},
	Superseded:          Supersession{},
	DeploymentReported:  DeploymentReport{},
	ReleaseRequested:    ReleaseRequest{},
	ReleaseApproved:     ReleaseApproval{},
	ReleaseMoved:        ReleaseMoves{},
	ReleaseVerified:     ReleaseVerification{},
	EnvironmentFrozen:   FreezeNotice{},
	EnvironmentUnfrozen: FreezeNotice{},
	DigestDeleted:       Deletion{},
	AdmissionRequested:  AdmissionRequest{},
}

// Source kinds a build can start from.
const (
	SourceDir    = "dir"    // a directory on the builder's filesystem
	SourceObject = "object" // a tarball in the blob Object Store, keyed by its digest
	SourceGit    = "git"    // a clean checkout of one revision of a git repository
	SourceLayout = "layout" // an OCI image layout, pushed as it is
)

// Source says where a build's input is.
type Source struct {
	Kind string `json:"kind" jsonschema:"enum=dir,enum=object,enum=git,enum=layout"`
	// Path is the directory, for Kind "dir" and "layout".
	Path string `json:"path,omitempty"`
	// Object is the Object Store key (the tarball's digest), for Kind "object".
	Object string `json:"object,omitempty"`
	// URL and Rev name the repository and revision, for Kind "git".
	URL string `json:"url,omitempty"`
	Rev string `json:"rev,omitempty"`
	// Ref is the full name of the ref Rev was pushed to (refs/heads/main,
	// refs/tags/v1.0.0), for Kind "git": only that ref is fetched, and Rev
	// must be on it. Without it every branch and tag is fetched.
	Ref string `json:"ref,omitempty"`
	// Origin is the repository a push was made to, as its forge's webhook
	// named it (its clone URL), when URL clones it from elsewhere (a
	// mirror): the forge whose commit statuses report the run. For Kind
	// "git"; "" when URL is that repository.
	Origin string `json:"origin,omitempty"`
	// Dir is the directory of the source to build, relative to its root
	// (a monorepo's services/api): its files and its digestline.yaml.
	// Default: the whole source. Not for Kind "layout".
	Dir string `json:"dir,omitempty"`
}

// String is the source as a person reads it: a git repository's URL
// (without a credential), ref and commit; a directory; a tarball; an OCI
// layout.
func (s Source) String() string {
	switch s.Kind {
	case SourceGit:
		what := withoutCredential(s.URL)
		if s.Ref != "" {
			what += " " + s.Ref
		}
		if s.Rev != "" && s.Rev != s.Ref {
			what += " at " + shortRev(s.Rev)
		}
		return what + s.dirPart()
	case SourceDir:
		return "directory " + s.Path + s.dirPart()
	case SourceObject:
		return "tarball " + shortRev(s.Object) + s.dirPart()
	case SourceLayout:
		return "OCI layout " + s.Path
	}
	return s.Kind
}

// dirPart names the directory built, when it is not the whole source.
func (s Source) dirPart() string {
	if s.Dir == "" {
		return ""
	}
	return ", directory " + s.Dir
}

// withoutCredential is a URL without the user and password a forge may
// take a token as.
func withoutCredential(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil || u.Scheme == "" {
		return raw
	}
	u.User = nil
	return u.String()
}

// Revision is the git object a source's push named, before it is checked
// out: Rev, when it is an object's full id (IsCommitID). For a branch's
// push that is the commit the build checks out; for a tag's, the commit
// it tags or, for an annotated tag from Bitbucket Data Center or Azure
// DevOps, the tag object itself. "" for any other source.
func (s Source) Revision() string {
	if s.Kind != SourceGit || !IsCommitID(s.Rev) {
		return ""
	}
	return s.Rev
}

// IsCommitID says whether s is a git commit's full id in lower case: 40
// hex digits, or 64 in a SHA-256 repository.
func IsCommitID(s string) bool {
	return (len(s) == 40 || len(s) == 64) && strings.Trim(s, "0123456789abcdef") == ""
}

// shortRev is a commit id or a digest cut to 12 hex digits, as a person
// reads it.
func shortRev(rev string) string {
	algo, hex, ok := strings.Cut(rev, ":")
	if !ok {
		algo, hex = "", rev
	} else {
		algo += ":"
	}
	if len(hex) < 40 || strings.Trim(hex, "0123456789abcdef") != "" {
		return rev
	}
	return algo + hex[:12]
}

// BuildSpec is what the image runs, how it is labelled and how its files
// become layers. It is also the schema of the digestline.yaml build file.
type BuildSpec struct {
	Entrypoint []string          `json:"entrypoint,omitempty"`
	Cmd        []string          `json:"cmd,omitempty"`
	Env        []string          `json:"env,omitempty"`
	WorkingDir string            `json:"workingDir,omitempty"`
	User       string            `json:"user,omitempty"`
	Ports      []string          `json:"ports,omitempty"`    // exposed ports, e.g. 8080/tcp
	Platform   string            `json:"platform,omitempty"` // os/arch[/variant], default linux/amd64
	Labels     map[string]string `json:"labels,omitempty"`
	// Annotations go on the manifest, e.g. org.opencontainers.image.source and .revision.
	Annotations map[string]string `json:"annotations,omitempty"`
	// Layers split the files into layers in order; unmatched files form the last one.
	Layers []oci.LayerRule `json:"layers,omitempty"`
	// Ignore leaves files out (globs; ** matches any depth; a pattern without / matches a name anywhere).
	Ignore []string `json:"ignore,omitempty"`
	// Compression of layers: gzip (default, parallel), zstd or none.
	Compression      string `json:"compression,omitempty" jsonschema:"enum=gzip,enum=zstd,enum=none"`
	CompressionLevel int    `json:"compressionLevel,omitempty" jsonschema:"minimum=0,maximum=9"`
	// MediaTypes is oci (default) or docker (Docker v2.2).
	MediaTypes string `json:"mediaTypes,omitempty" jsonschema:"enum=oci,enum=docker"`
	// Base is the image to build on: scratch (default), oci:PATH (an OCI
	// layout), or a registry reference by tag or digest.
	Base string `json:"base,omitempty"`
	// Platforms builds an image index with one image per platform.
	Platforms []string `json:"platforms,omitempty"`
	// PlatformSources gives each platform its own directory in the source
	// (e.g. linux/arm64: dist/arm64); without it every platform gets the
	// same files, unless Go builds them.
	PlatformSources map[string]string `json:"platformSources,omitempty"`
	// Go cross-compiles a main package per platform, ko-style.
	Go *GoBuild `json:"go,omitempty"`
	// SBOM attaches the image's SBOM as referrers, SPDX 2.3 and CycloneDX 1.5 JSON: its files, and its packages with their purls.
	SBOM bool `json:"sbom,omitempty"`
}

// GoBuild compiles a Go main package into the image, one binary per platform.
type GoBuild struct {
	Main    string   `json:"main" jsonschema:"minLength=1"` // package to build, relative to the source, e.g. ./cmd/app
	Binary  string   `json:"binary,omitempty"`              // its path in the image; default /<package name>
	Ldflags string   `json:"ldflags,omitempty"`
	Tags    []string `json:"tags,omitempty"`
}

// BuildRequest is the data of build.requested.
type BuildRequest struct {
	Source Source    `json:"source"`
	Target string    `json:"target" jsonschema:"minLength=1"` // image reference to push to, e.g. registry/repo:tag
	Spec   BuildSpec `json:"spec"`
	// PromoteTo is the environment a verified build is promoted to; empty means the first of the chain.
	PromoteTo string `json:"promoteTo,omitempty"`
	// Tag guards the target tag against drift.
	Tag TagGuard `json:"tag,omitempty"`
}

// TagGuard says when the pusher may move the target tag.
type TagGuard struct {
	// Policy is fail (default: refuse when the tag is not at Expect, if
	// given), force, or if-absent.
	Policy string `json:"policy,omitempty" jsonschema:"enum=fail,enum=force,enum=if-absent"`
	// Expect is the digest the tag should point at before the push.
	Expect string `json:"expect,omitempty"`
}

// BuildResult is the data of build.completed: the whole artifact graph, with
// every blob stored in BlobStore under its digest.
type BuildResult struct {
	Target    string    `json:"target"`
	Graph     oci.Graph `json:"graph"`
	BlobStore string    `json:"blobStore"`
	PromoteTo string    `json:"promoteTo,omitempty"`
	Tag       TagGuard  `json:"tag,omitempty"`
	// RequestedAt is when the run was asked for (build.requested's time):
	// the order in which runs move a tag (package tags).
	RequestedAt time.Time `json:"requestedAt,omitzero"`
	// Commit is the commit a git source's build checked out: what its
	// branch, tag (an annotated tag's commit, not the tag) or revision
	// named when the builder fetched it; "" for any other source.
	Commit   string   `json:"commit,omitempty" jsonschema:"pattern=^([0-9a-f]{40}|[0-9a-f]{64})$"`
	Evidence Evidence `json:"evidence"`
}

// Evidence names the events that prove each step of a run, by event id.
type Evidence struct {
	Request string `json:"request,omitempty"`
	Build   string `json:"build,omitempty"`
	Push    string `json:"push,omitempty"`
	Verify  string `json:"verify,omitempty"`
}

// Failure is the data of build.failed, push.failed and verify.failed: what
// went wrong, where, of which class, and what a person should do next (a
// failure.Report), for which target and digest, on what evidence. It is made
// from an error by NewFailure, and nowhere else.
type Failure struct {
	Target string `json:"target,omitempty"`
	Digest string `json:"digest,omitempty"`
	// Commit is, for a build of a git source that failed once checked out,
	// the commit it checked out (as build.completed's).
	Commit string `json:"commit,omitempty" jsonschema:"pattern=^([0-9a-f]{40}|[0-9a-f]{64})$"`
	failure.Report
	Evidence Evidence `json:"evidence"`
	// Release is set when the run was a release's: which image failed,
	// and what became of the tags moved before it.
	Release *ReleaseFailure `json:"release,omitempty"`
}

// NewFailure is the one conversion of an error into a run's failure: its
// *failure.Error (failure.As classifies any other) as the event carries it.
func NewFailure(err error) Failure { return Failure{Report: failure.As(err).Report()} }

// PushResult is the data of push.completed.
type PushResult struct {
	Target        string    `json:"target"`
	Digest        string    `json:"digest" jsonschema:"minLength=1"`
	Graph         oci.Graph `json:"graph"`
	BlobsUploaded int       `json:"blobsUploaded"`
	BlobsExisting int       `json:"blobsExisting"`
	BlobsMounted  int       `json:"blobsMounted"`
	BytesUploaded int64     `json:"bytesUploaded"`
	Requests      int       `json:"requests"`
	PromoteTo     string    `json:"promoteTo,omitempty"`
	// Promotion is set when the push moved an environment's tag for an
	// approved promotion, and travels on to verify.completed; its Previous
	// is then the digest the environment's promotion before this one put
	// the tag at, in the order the moves landed ("" when not known).
	Promotion   *Approval `json:"promotion,omitempty"`
	RequestedAt time.Time `json:"requestedAt,omitzero"`
	// Commit is the git commit the digest was built from (build.completed's),
	// carried on to the verification, the approval and the record.
	Commit   string   `json:"commit,omitempty" jsonschema:"pattern=^([0-9a-f]{40}|[0-9a-f]{64})$"`
	Evidence Evidence `json:"evidence"`
}

// VerifyResult is the data of verify.completed.
type VerifyResult struct {
	Target      string   `json:"target"`
	Digest      string   `json:"digest" jsonschema:"minLength=1"`
	Descriptors int      `json:"descriptors"`
	BytesHashed int64    `json:"bytesHashed"`
	Checks      []string `json:"checks"` // the [VERIFY] lines, in order
	PromoteTo   string   `json:"promoteTo,omitempty"`
	// Promotion is the approved promotion this verification re-checks,
	// after the environment's tag moved (nil for a build's own run).
	Promotion   *Approval `json:"promotion,omitempty"`
	RequestedAt time.Time `json:"requestedAt,omitzero"`
	// Commit is the git commit the digest was built from (push.completed's).
	Commit   string   `json:"commit,omitempty" jsonschema:"pattern=^([0-9a-f]{40}|[0-9a-f]{64})$"`
	Evidence Evidence `json:"evidence"`
	// Trust is what an admitted image was proven with (admission.go): its
	// promotions prove it with the same.
	Trust *Trust `json:"trust,omitempty"`
}

// Drift is the data of drift.detected: a tag that does not point where it should.
type Drift struct {
	Target   string `json:"target"`
	Tag      string `json:"tag"`
	Expected string `json:"expected"`
	Found    string `json:"found"`
}

// PromotionRequest is the data of promotion.requested.
type PromotionRequest struct {
	Repository  string `json:"repository" jsonschema:"minLength=1"`
	Digest      string `json:"digest" jsonschema:"minLength=1"`
	From        string `json:"from,omitempty"`
	To          string `json:"to" jsonschema:"minLength=1"`
	RequestedBy string `json:"requestedBy,omitempty"`
	// Rollback, when set, asks for the environment to go back to Digest,
	// which it held before: the gates still check its evidence.
	Rollback *Rollback `json:"rollback,omitempty"`
}

// Rollback is why an environment goes back to a digest it held before,
// and what it leaves.
type Rollback struct {
	Reason string `json:"reason" jsonschema:"minLength=1"`
	// From is the digest the environment held when the rollback was asked.
	From string `json:"from,omitempty"`
	// Report is the deployment.reported event that caused an automatic
	// rollback (an environment whose policy says rollbackOn: failed).
	Report string `json:"report,omitempty"`
}

// Approval is the data of promotion.approved: every gate passed, and the
// pusher is to move the environment's tag to the digest — but only from
// Previous (drift protection) — after which the verifier re-verifies and the
// reporter records.
type Approval struct {
	Environment string `json:"environment" jsonschema:"minLength=1"`
	Repository  string `json:"repository" jsonschema:"minLength=1"`
	Digest      string `json:"digest" jsonschema:"minLength=1"`
	Tag         string `json:"tag" jsonschema:"minLength=1"`
	// Previous is the environment's digest when the gates passed ("" for
	// none): the tag must still point there, or at Digest, to be moved.
	Previous    string `json:"previous,omitempty"`
	RequestedBy string `json:"requestedBy,omitempty"`
	// Location is the repository the environment's tag is in, when the
	// environment lives elsewhere than Repository (another registry or
	// path): the digest is copied there, with everything attached to it,
	// and proven before the tag moves.
	Location string `json:"location,omitempty"`
	// Source is the repository the copy reads from: the previous
	// environment's when it holds the digest, else Repository.
	Source string `json:"source,omitempty"`
	// RequestedAt is when the promotion was asked for (for a build's own
	// promotion, when the build was): moves of one tag keep that order.
	RequestedAt time.Time `json:"requestedAt,omitzero"`
	// Commit is the git commit the digest was built from, as its first
	// verification said ("" for a digest not built from git here).
	Commit string `json:"commit,omitempty" jsonschema:"pattern=^([0-9a-f]{40}|[0-9a-f]{64})$"`
	// Evidence names the events that built, pushed and verified the digest.
	Evidence Evidence `json:"evidence"`
	// Rollback is the request's, when it asked for one.
	Rollback *Rollback `json:"rollback,omitempty"`
	// Emergency says the promotion went through a freeze, which, and
	// whose approval let it.
	Emergency string `json:"emergency,omitempty"`
	// Trust is an admitted image's (admission.go): the keys its
	// verification after the move proves its evidence with.
	Trust *Trust `json:"trust,omitempty"`
}

// Place is the repository an approval's tag moves in.
func (a Approval) Place() string { return cmp.Or(a.Location, a.Repository) }

// Promotion is the data of promoted and the record kept per environment and
// repository (the repository builds are pushed to: the application's
// name). Deployers deploy Ref(): Location@Digest when the environment lives
// in another repository, else Repository@Digest.
//
// A release's promoted event and record have no Repository and Digest of
// their own: Release lists its images, each with its own promotion.
type Promotion struct {
	Environment    string    `json:"environment" jsonschema:"minLength=1"`
	Repository     string    `json:"repository,omitempty"`
	Digest         string    `json:"digest,omitempty"`
	Tag            string    `json:"tag,omitempty"`
	PromotedAt     time.Time `json:"promotedAt"`
	PreviousDigest string    `json:"previousDigest,omitempty"`
	RunID          string    `json:"runId"`
	RequestedBy    string    `json:"requestedBy,omitempty"`
	// RequestedAt is when the promotion was asked for: of two records of
	// one environment, the later request's is current.
	RequestedAt time.Time `json:"requestedAt,omitzero"`
	// Location is the repository the environment's tag is in, when it is
	// not Repository; Digest was proven there, byte for byte, before the
	// tag moved.
	Location string `json:"location,omitempty"`
	// Source is the repository the digest was copied from to Location:
	// the same Digest, read there.
	Source string `json:"source,omitempty"`
	// Commit is the git commit the digest was built from, when it was
	// built from git here: what a deployer reports a deployment of.
	Commit   string   `json:"commit,omitempty" jsonschema:"pattern=^([0-9a-f]{40}|[0-9a-f]{64})$"`
	Evidence Evidence `json:"evidence"`
	// Rollback says the environment went back to a digest it held before
	// (deployers can tell a rollback from a new release), and Reason why.
	Rollback bool   `json:"rollback,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// Report is the deployment report that caused an automatic rollback.
	Report string `json:"report,omitempty"`
	// Emergency says the promotion went through a freeze: which, and
	// whose approval let it.
	Emergency string `json:"emergency,omitempty"`
	// Release is the release the promotion was part of: on the release's
	// own event and record, with every image; on an image's, its name.
	Release *ReleaseRecord `json:"release,omitempty"`
}

// Place is the repository the environment's tag is in.
func (p Promotion) Place() string { return cmp.Or(p.Location, p.Repository) }

// Ref is what to deploy: the environment's repository at the digest.
func (p Promotion) Ref() string { return p.Place() + "@" + p.Digest }

// BuiltFrom is the commit the digest was built from as a line about the
// promotion ends with it (", built from commit 1a2b3c4d5e6f"), or "" when
// the record names none.
func (p Promotion) BuiltFrom() string {
	if p.Commit == "" {
		return ""
	}
	return fmt.Sprintf(", built from commit %.12s", p.Commit)
}

// Rejection is the data of promotion.rejected.
type Rejection struct {
	Environment string    `json:"environment"`
	Repository  string    `json:"repository"`
	Digest      string    `json:"digest"`
	Gate        string    `json:"gate" jsonschema:"minLength=1"` // the gate that refused: environment, verified, previous-environment, pinned, freeze, tag-drift, required-referrers, policy/<rule>
	Reason      string    `json:"reason"`
	Hint        string    `json:"hint,omitempty"`
	RequestedBy string    `json:"requestedBy,omitempty"`
	RejectedAt  time.Time `json:"rejectedAt"`
	// Release names the release the refused image was part of: none of
	// its images moved.
	Release string `json:"release,omitempty"`
}

// Deployment report statuses.
const (
	DeployOK     = "ok"
	DeployFailed = "failed"
)

// DeploymentReport is the data of deployment.reported: a deployer says
// how its deployment of a promotion went. It is sent in the promoted
// run (events.Follow of the promoted event, keyed by deployer and
// status, so a deployer that reports again sends the same event).
type DeploymentReport struct {
	Environment string `json:"environment" jsonschema:"minLength=1"`
	Repository  string `json:"repository" jsonschema:"minLength=1"`
	Digest      string `json:"digest" jsonschema:"minLength=1"`
	Deployer    string `json:"deployer" jsonschema:"minLength=1"`
	Status      string `json:"status" jsonschema:"enum=ok,enum=failed"`
	Detail      string `json:"detail,omitempty"`
	// Release names the release the image was deployed in, if any.
	Release string `json:"release,omitempty"`
}

// FreezeNotice is the data of environment.frozen and environment.unfrozen:
// an environment where every promotion is refused (but an emergency
// approver's) until Until, or no longer. A freeze someone set names who
// (By, At: when they set or lifted it); a window of the policy is named
// (Window), and By is "policy".
type FreezeNotice struct {
	Environment string    `json:"environment" jsonschema:"minLength=1"`
	Until       time.Time `json:"until"`
	Reason      string    `json:"reason"`
	By          string    `json:"by,omitempty"`
	Window      string    `json:"window,omitempty"`
	At          time.Time `json:"at,omitzero"`
}

// Deletion is the data of digest.deleted: a manifest garbage collection
// deleted from Repository (with the tags that pointed at it), what it was
// (an image, an index's platform manifest, a referrer of Subject, the
// referrers' fallback index), and the rule that let it go.
type Deletion struct {
	Repository string    `json:"repository" jsonschema:"minLength=1"`
	Digest     string    `json:"digest" jsonschema:"minLength=1"`
	Kind       string    `json:"kind" jsonschema:"enum=image,enum=platform,enum=referrer,enum=fallback-index"`
	Subject    string    `json:"subject,omitempty"`
	Tags       []string  `json:"tags,omitempty"`
	Rule       string    `json:"rule" jsonschema:"minLength=1"`
	DeletedAt  time.Time `json:"deletedAt"`
}

// Supersession is the data of superseded: the run was overtaken by a newer
// request for the same tag before its own move landed (package tags). The
// tag is where the newer request put it. It ends the run, and is not a
// failure: nothing is wrong, and no one is to act.
type Supersession struct {
	// Tag is the tag the run was to move (registry/repository:tag).
	Tag         string `json:"tag" jsonschema:"minLength=1"`
	Environment string `json:"environment,omitempty"` // when the tag is an environment's
	Repository  string `json:"repository" jsonschema:"minLength=1"`
	Digest      string `json:"digest" jsonschema:"minLength=1"` // this run's digest
	// By is the newer run, and ByDigest where it put the tag.
	By       string `json:"by" jsonschema:"minLength=1"`
	ByDigest string `json:"byDigest,omitempty"`
	// Step is where the run was overtaken: gates, promote (the
	// environment's tag update), or record (the tag moved, but a newer
	// promotion was recorded first). A run whose build's tag a newer run
	// moved first goes on by digest: its environment's tag decides.
	Step     string   `json:"step" jsonschema:"enum=gates,enum=promote,enum=record"`
	Evidence Evidence `json:"evidence"`
	// Release names the release the overtaken image was part of: its
	// other images' tags were put back.
	Release string `json:"release,omitempty"`
}
