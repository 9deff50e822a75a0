package reporter

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.opentelemetry.io/otel/codes"
)

// ArtifactTypePromotion is the artifactType of the promotion record pushed
// as a referrer of every promoted digest.
const ArtifactTypePromotion = "application/vnd.digestline.promotion.v1+json"

// attest pushes the promotion's evidence as an OCI artifact whose subject
// is the promoted digest, so registry tools (oras discover, cosign
// verify-attestation, digestline discover) show where a digest was
// promoted, when, on whose request and on what evidence: with a signing
// key, a signed SLSA verification summary (which policy, which inputs,
// which result); without one, the promotion record unsigned. Either is made
// of the stored record (and signed deterministically), so a redelivery
// pushes the same digest again: a warm push, not a second attestation.
//
// A registry that fails for a moment is retried (the event is redelivered);
// one that refuses artifacts for good does not undo a promotion whose tag
// has already moved: the refusal is logged and marked on the span.
func (r *reporter) attest(ctx context.Context, rec events.Promotion) error {
	ctx, span := r.cfg.Traces().Tracer("github.com/digestline/digestline/services/reporter").Start(ctx, "attest "+rec.Environment)
	defer span.End()
	err := r.pushAttestation(ctx, rec)
	if err == nil {
		return nil
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	e := failure.As(err)
	if e.Temporary() {
		return err
	}
	r.cfg.Log().Warn("promotion recorded without its attestation", "environment", rec.Environment, "digest", rec.Digest, "error", err, "hint", e.Hint)
	return nil
}

func (r *reporter) pushAttestation(ctx context.Context, rec events.Promotion) error {
	repo, err := name.NewRepository(rec.Place())
	if err != nil {
		return &failure.Error{Class: failure.Schema, Err: err}
	}
	reg, err := r.Registry.Open(ctx, repo, false)
	if err != nil {
		return err
	}
	// The subject's descriptor and the summary's evidence are read at once.
	var (
		summary    VSA
		summaryErr error
		wg         sync.WaitGroup
	)
	if r.cfg.Signer != nil {
		wg.Go(func() { summary, summaryErr = r.summary(ctx, reg, rec) })
	}
	subject, found, err := reg.HeadManifest(ctx, rec.Digest)
	wg.Wait()
	if err = cmp.Or(err, summaryErr); err != nil {
		return err
	}
	if !found {
		return &failure.Error{Class: failure.NotFound, Err: fmt.Errorf("%s@%s is gone from the registry", rec.Place(), rec.Digest),
			Hint: "the promoted manifest was deleted after it was verified"}
	}
	var store oci.MemStore
	var g oci.Graph
	if r.cfg.Signer != nil {
		g, err = sign.Attest(ctx, r.cfg.Signer, rec.Place(), subject, sign.PredicateSLSAVSA, summary, rec.PromotedAt, &store)
	} else {
		g, err = promotionRecord(ctx, rec, subject, &store)
	}
	if err != nil {
		return err
	}
	_, err = r.Registry.Push(ctx, repo.Digest(g.Root.Digest.String()), g, &store, nil)
	return err
}

// promotionRecord is the promotion record as an unsigned artifact, what a
// reporter without a signing key attaches.
func promotionRecord(ctx context.Context, rec events.Promotion, subject v1.Descriptor, store oci.BlobStore) (oci.Graph, error) {
	body, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return oci.Graph{}, err
	}
	return oci.BuildArtifact(ctx, oci.ArtifactConfig{
		ArtifactType: ArtifactTypePromotion,
		Files:        []oci.ArtifactFile{{Content: body, Title: "promotion.json", MediaType: ArtifactTypePromotion}},
		Annotations: map[string]string{
			"dev.digestline.promotion.environment": rec.Environment,
			"dev.digestline.promotion.tag":         rec.Tag,
		},
		Subject: &subject,
		Created: rec.PromotedAt,
	}, store)
}
