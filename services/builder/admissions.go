package builder

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/service"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/google/go-containerregistry/pkg/name"
)

// Registries notify digestline of images other tools pushed (registry
// hooks, registryhooks.go); these rules say which are admitted into the
// pipeline (events.AdmissionRequest), where they promote to, and what
// they must carry.

// AdmissionRule says which pushes to a registry are admitted.
type AdmissionRule struct {
	// Match is the repository as the registry names it (team/app), or a
	// pattern of path.Match (team/*); with a host first
	// (registry.example.com/team/app), only that registry's.
	Match string `json:"match"`
	// Registry is where the image is pulled from, host[:port] (default:
	// the host the notification names; Docker Hub's: index.docker.io).
	Registry string `json:"registry"`
	// Tags is a regular expression the pushed tag must match (default:
	// any tag, but the ones cosign and the referrers fallback keep
	// signatures and referrers under). A push by digest alone is not
	// admitted.
	Tags string `json:"tags"`
	// PromoteTo is the environment the run promotes to (default: the first).
	PromoteTo string `json:"promoteTo"`
	// Keys are public key files (cosign.pub): the image must be signed by
	// one of them.
	Keys []string `json:"keys"`
	// Provenance requires a SLSA provenance, signed by one of Keys, from
	// this builder and source repository.
	Provenance *events.ProvenanceRule `json:"provenance"`
	// WaitForSignature is how long after the push the verifier waits for
	// the signature (and provenance) to be attached, when it is not yet:
	// another pipeline signs after it pushes (default 2m with keys).
	WaitForSignature string `json:"waitForSignature"`

	tags *regexp.Regexp
	pems []string
	wait time.Duration
}

// maxSignatureWait bounds a rule's waitForSignature: the verifier waits
// within one handling of the event, which the bus bounds at 10 minutes.
const maxSignatureWait = 9 * time.Minute

// load checks the rule and reads its keys.
func (r *AdmissionRule) load() error {
	if r.Match == "" {
		return fmt.Errorf("needs match: the repository, as the registry names it")
	}
	if _, err := path.Match(r.Match, ""); err != nil {
		return fmt.Errorf("match %q: %w", r.Match, err)
	}
	var err error
	if r.Tags != "" {
		if r.tags, err = regexp.Compile(r.Tags); err != nil {
			return fmt.Errorf("tags: %w", err)
		}
	}
	if r.pems, err = sign.ReadPublicKeys(r.Keys); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	if r.Provenance != nil && len(r.Keys) == 0 {
		return fmt.Errorf("provenance needs keys: the provenance must be signed by a key the rule trusts")
	}
	if len(r.Keys) > 0 {
		r.wait = 2 * time.Minute
	}
	if r.WaitForSignature != "" {
		if r.wait, err = time.ParseDuration(r.WaitForSignature); err != nil || r.wait < 0 || r.wait > maxSignatureWait {
			return fmt.Errorf("waitForSignature %q: want a duration up to %s, e.g. 2m (the verifier waits within its handler's bound)", r.WaitForSignature, maxSignatureWait)
		}
	}
	return nil
}

// matches says whether the rule admits repo (as the registry names it)
// pushed to host.
func (r AdmissionRule) matches(host, repo string) bool {
	if ok, _ := path.Match(r.Match, repo); ok {
		return true
	}
	ok, _ := path.Match(r.Match, host+"/"+repo)
	return ok && host != ""
}

// cosignTag matches the tags cosign keeps signatures, attestations and
// SBOMs under, and the referrers API's fallback tag: pushing those is
// attaching evidence, not an image to admit.
var cosignTag = regexp.MustCompile(`^sha256-[0-9a-f]{64}(\.(sig|att|sbom))?$`)

// admits says whether the rule admits tag; when not, why.
func (r AdmissionRule) admits(tag string) (bool, string) {
	switch {
	case tag == "":
		return false, "pushed by digest, with no tag"
	case cosignTag.MatchString(tag):
		return false, "evidence attached to an image (cosign's or the referrers fallback's tag)"
	case r.tags != nil && !r.tags.MatchString(tag):
		return false, fmt.Sprintf("the tag does not match the rule's tags %q", r.Tags)
	}
	return true, ""
}

// pushed is one image a registry says was pushed.
type pushed struct {
	delivery  string // the sender's id of it: a redelivery is the same run ("": repo:tag@digest)
	host      string // the registry's host, as the sender names it
	repo      string // the repository, as the registry names it
	tag       string
	digest    string // "" when the sender does not say (then the tag's, now)
	mediaType string // "" when the sender does not say
	at        time.Time
}

// admissionsAnswer answers a registry's notification.
type admissionsAnswer struct {
	Runs    []WebhookAccepted `json:"runs"`
	Ignored []string          `json:"ignored,omitempty"`
}

// admit maps each image a registry says was pushed to its rule, and
// publishes an admission for each one a rule admits; it answers 202 with
// the runs, or 200 saying why none was admitted.
func (h *Webhooks) admit(w http.ResponseWriter, r *http.Request, sender string, images []pushed) {
	var ans admissionsAnswer
	for _, p := range images {
		req, why, err := h.admission(r.Context(), sender, p)
		if err != nil {
			reply(w, http.StatusBadGateway, fmt.Sprintf("%s/%s:%s: %v (the sender retries the notification)", p.host, p.repo, p.tag, err))
			return
		}
		if why != "" {
			ans.Ignored = append(ans.Ignored, fmt.Sprintf("%s:%s: %s", p.repo, p.tag, why))
			continue
		}
		acc, err := h.publishEvent(r.Context(), sender+"/"+req.Delivery, events.AdmissionRequested, req.Target, req)
		if err != nil {
			reply(w, publishStatus(err), err.Error())
			return
		}
		ans.Runs = append(ans.Runs, acc)
	}
	if len(ans.Runs) == 0 {
		if len(ans.Ignored) == 0 {
			ans.Ignored = []string{"the notification names no image pushed"}
		}
		reply(w, http.StatusOK, "ignored: "+strings.Join(ans.Ignored, "; "))
		return
	}
	service.WriteJSON(w, http.StatusAccepted, ans)
}

// admission is the admission of p under its rule; why says why there is
// none. The digest of a sender that names only the tag is the tag's now,
// read from the registry.
func (h *Webhooks) admission(ctx context.Context, sender string, p pushed) (req events.AdmissionRequest, why string, err error) {
	rule, ok := h.admissionRule(p.host, p.repo)
	if !ok {
		return req, "no rule in the webhook config's images matches the repository", nil
	}
	if ok, why := rule.admits(p.tag); !ok {
		return req, why, nil
	}
	if p.mediaType != "" && !manifestTypes[p.mediaType] {
		return req, "not an image manifest or index (" + p.mediaType + ")", nil
	}
	host := cmp.Or(rule.Registry, p.host)
	tag, err := name.NewTag(host+"/"+p.repo+":"+p.tag, name.WeakValidation)
	if err != nil {
		return req, fmt.Sprintf("%s/%s:%s is no image reference: %v", host, p.repo, p.tag, err), nil
	}
	if p.digest == "" {
		if p.digest, err = h.tagDigest(ctx, tag); err != nil {
			return req, "", err
		}
	}
	if h.tags != nil {
		own, err := h.tags.MovedTo(ctx, tag.Name(), p.digest)
		if err != nil {
			return req, "", fmt.Errorf("read the pipeline's moves of %s: %w", tag, err)
		}
		if own {
			return req, "the pipeline's own move of the tag (a push or a promotion)", nil
		}
	}
	// A sender that names no delivery of its own (Quay) is redelivered
	// as the same image and tag.
	delivery := cmp.Or(p.delivery, p.repo+":"+p.tag+"@"+p.digest)
	at := p.at
	if at.Unix() <= 0 { // the sender said no time: now is when it was asked for
		at = time.Now()
	}
	req = events.AdmissionRequest{Target: tag.Name(), Digest: p.digest, PromoteTo: rule.PromoteTo, Sender: sender, Delivery: delivery,
		Rule: rule.Match, RequestedAt: at.UTC(),
		Trust: events.Trust{Keys: rule.pems, Provenance: rule.Provenance, WaitSeconds: int(rule.wait / time.Second)}}
	if err := req.Check(); err != nil {
		return req, err.Error(), nil
	}
	return req, "", nil
}

// manifestTypes are the media types a push of an image is of (a
// registry notifies of blobs too).
var manifestTypes = map[string]bool{
	"application/vnd.oci.image.manifest.v1+json":                true,
	"application/vnd.oci.image.index.v1+json":                   true,
	"application/vnd.docker.distribution.manifest.v2+json":      true,
	"application/vnd.docker.distribution.manifest.list.v2+json": true,
}

func (h *Webhooks) admissionRule(host, repo string) (AdmissionRule, bool) {
	for _, r := range h.cfg.Images {
		if r.matches(host, repo) {
			return r, true
		}
	}
	return AdmissionRule{}, false
}

// tagDigest reads the digest tag points at now, bounded in time.
func (h *Webhooks) tagDigest(ctx context.Context, tag name.Tag) (string, error) {
	if h.registry == nil {
		return "", fmt.Errorf("the notification names no digest, and the webhooks have no registry client to read the tag's")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	repo, err := h.registry.Open(ctx, tag.Context(), false)
	if err != nil {
		return "", err
	}
	d, found, err := repo.HeadManifest(ctx, tag.TagStr())
	switch {
	case err != nil:
		return "", err
	case !found:
		return "", fmt.Errorf("the registry has no tag %s (deleted since it was pushed?)", tag)
	}
	return d.Digest.String(), nil
}
