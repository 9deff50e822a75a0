package events

import (
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
)

// An admission brings an image another tool built and pushed (a Dockerfile
// build in CI, ko, Bazel, a vendor's pipeline) into the pipeline: a
// registry's notification, a watch or digestline admit asks for it, the
// verifier proves its bytes and its evidence with the keys the rule
// trusts, and it promotes as a build's run does. Its run is
// admission.requested → verify.completed → promotion.requested … →
// promoted, or verify.failed naming the signature that did not verify.

// Senders of admission.requested.
const (
	SenderDistribution = "distribution" // the CNCF distribution registry's notifications
	SenderHarbor       = "harbor"
	SenderQuay         = "quay"
	SenderGitHub       = "github"    // GitHub's registry_package and package events
	SenderDockerHub    = "dockerhub" // Docker Hub's webhooks
	SenderWatch        = "watch"     // a watch polling a repository's tags
	SenderAdmit        = "admit"     // digestline admit, by hand
)

// AdmissionRequest is the data of admission.requested.
type AdmissionRequest struct {
	// Target is where the image was pushed: REGISTRY/REPOSITORY:TAG, or
	// REGISTRY/REPOSITORY when it was pushed by digest alone.
	Target string `json:"target" jsonschema:"minLength=1"`
	Digest string `json:"digest" jsonschema:"minLength=1"`
	// PromoteTo is the environment the run promotes to (default: the first).
	PromoteTo string `json:"promoteTo,omitempty"`
	// Trust is what the image must carry to be admitted.
	Trust Trust `json:"trust"`
	// Sender is who asked (the Sender constants), Delivery its id of the
	// notification, and Rule the match of the rule that admitted it.
	Sender   string `json:"sender" jsonschema:"minLength=1"`
	Delivery string `json:"delivery,omitempty"`
	Rule     string `json:"rule,omitempty"`
	// RequestedBy is who asked by hand (digestline admit's token's name).
	RequestedBy string `json:"requestedBy,omitempty"`
	// RequestedAt is when the image was pushed, as its sender says, or
	// when it was asked for: runs to one tag are ordered by it.
	RequestedAt time.Time `json:"requestedAt,omitzero"`
}

// Trust is what an admitted image must carry.
type Trust struct {
	// Keys are the public keys (PEM, PKIX: cosign.pub) the image must be
	// signed by (one of them), and every signature and attestation
	// attached to it too. None: the verifier's own trusted keys
	// (DIGESTLINE_TRUSTED_KEYS), when it has any, else no signature is
	// asked for.
	Keys []string `json:"keys,omitempty"`
	// Provenance, when set, requires a SLSA provenance attestation, by one
	// of the keys, from this builder and source repository.
	Provenance *ProvenanceRule `json:"provenance,omitempty"`
	// WaitSeconds is how long after RequestedAt the verifier waits for
	// the signature and provenance to be attached, while they are not:
	// another pipeline signs after it pushes, and its registry notifies
	// of the push at once.
	WaitSeconds int `json:"waitSeconds,omitempty" jsonschema:"minimum=0,maximum=540"`
}

// ProvenanceRule names the builder and the source a SLSA provenance must
// state; "" accepts any.
type ProvenanceRule struct {
	// Builder is the provenance's builder id (runDetails.builder.id),
	// e.g. https://github.com/actions/runner/github-hosted.
	Builder string `json:"builder,omitempty"`
	// Source is the repository the image was built from, as a URL
	// (https://github.com/org/app): one of the provenance's resolved
	// dependencies, or a repository its external parameters name.
	Source string `json:"source,omitempty"`
}

// Check says what is wrong with the request, if anything.
func (r AdmissionRequest) Check() error {
	if _, err := digest.Parse(r.Digest); err != nil {
		return fmt.Errorf("admission of %s: digest %q: %w", r.Target, r.Digest, err)
	}
	if r.Target == "" || r.Sender == "" {
		return errors.New("an admission needs its target and its sender")
	}
	return nil
}
