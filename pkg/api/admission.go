package api

import (
	"fmt"

	"github.com/digestline/digestline/pkg/events"
	"github.com/google/go-containerregistry/pkg/name"
)

// AdmitRequest is the body of POST /v1/admissions: admit ref, an image
// another tool built and pushed (registry/repo@sha256:…, or
// registry/repo:tag@sha256:… to say the tag it was pushed to), into the
// pipeline, promoting it to To (default: the first environment) once its
// bytes and evidence are proven.
type AdmitRequest struct {
	Ref string `json:"ref"`
	To  string `json:"to,omitempty"`
	// Keys are public keys (PEM, cosign.pub) the image must be signed by.
	Keys []string `json:"keys,omitempty"`
	// Provenance, when set, requires a SLSA provenance from this builder
	// and source, signed by one of the keys.
	Provenance *events.ProvenanceRule `json:"provenance,omitempty"`
}

// Request is the admission.requested this body asks for.
func (r AdmitRequest) Request() (events.AdmissionRequest, error) {
	d, err := name.NewDigest(r.Ref)
	if err != nil {
		return events.AdmissionRequest{}, fmt.Errorf("ref %q: want registry/repo@sha256:<hex> (or registry/repo:tag@sha256:<hex>): %w", r.Ref, err)
	}
	target := d.Context().Name()
	if t, err := name.NewTag(r.Ref[:len(r.Ref)-len(d.DigestStr())-1]); err == nil && t.TagStr() != name.DefaultTag {
		target = t.Name()
	}
	req := events.AdmissionRequest{Target: target, Digest: d.DigestStr(), PromoteTo: r.To, Sender: events.SenderAdmit,
		Trust: events.Trust{Keys: r.Keys, Provenance: r.Provenance}}
	return req, req.Check()
}
