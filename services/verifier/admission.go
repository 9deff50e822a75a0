package verifier

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/digestline/digestline/pkg/verify"
	"github.com/google/go-containerregistry/pkg/name"
)

// admit proves an image another tool built and pushed: every byte (there
// is no build to compare it with), and its signatures and attestations
// with the keys its rule trusts. It then goes on to the reporter as a
// build's verification does. The tag it was pushed to is not checked: the
// admission is of the digest, and a newer push to the tag is the newer
// admission's.
func (v *verifier) admit(ctx context.Context, m bus.Message, req events.AdmissionRequest) error {
	res := events.VerifyResult{Target: req.Target, Digest: req.Digest, PromoteTo: req.PromoteTo, RequestedAt: req.RequestedAt,
		Evidence: events.Evidence{Request: m.Event.ID()}, Trust: &req.Trust}
	fail := func(err error) error {
		return v.Bus.Fail(ctx, m, events.VerifyFailed, err, events.Failure{Target: req.Target, Digest: req.Digest, Report: failure.Report{Stage: "verify"}, Evidence: res.Evidence})
	}
	if err := req.Check(); err != nil {
		return fail(&failure.Error{Class: failure.Schema, Stage: "verify", Err: err, Hint: "admit REGISTRY/REPOSITORY@sha256:<hex>"})
	}
	opts, err := v.trusting(req.Trust)
	if err != nil {
		return fail(err)
	}
	target, err := name.ParseReference(req.Target)
	if err != nil {
		return fail(&failure.Error{Class: failure.Schema, Stage: "verify", Err: err, Hint: "the admitted target is no image reference"})
	}
	ref := target.Context().Digest(req.Digest)
	ctx, span := v.cfg.Traces().Tracer("github.com/digestline/digestline/services/verifier").Start(ctx, "admit "+ref.String())
	defer span.End()
	rep, err := v.awaitSigned(ctx, m, ref, opts, req)
	if err != nil {
		span.RecordError(err)
		return fail(err)
	}
	rep.Checks = append([]string{fmt.Sprintf("[VERIFY] admitted %s from %s: built elsewhere, every byte proven as the registry serves it", req.Digest, req.Sender)}, rep.Checks...)
	v.proven(ctx, m, req.Digest, rep)
	res.Descriptors, res.BytesHashed, res.Checks = rep.Descriptors, rep.BytesHashed, rep.Checks
	_, err = v.Bus.Emit(ctx, m.Event, events.VerifyCompleted, "", res)
	return err
}

// awaitSigned proves ref's bytes once, then its evidence, and its
// evidence again while it lacks only its signature or provenance, until
// req's wait since it was pushed is over: the pipeline that pushed it
// signs it after, and its registry notified us of the push at once.
func (v *verifier) awaitSigned(ctx context.Context, m bus.Message, ref name.Digest, opts verify.Options, req events.AdmissionRequest) (verify.Report, error) {
	bytesOnly := opts
	bytesOnly.Keys, bytesOnly.Also, bytesOnly.Provenance = nil, nil, nil
	rep, err := verify.Image(ctx, v.Registry, ref, nil, bytesOnly)
	if err != nil || len(opts.Keys) == 0 {
		return rep, err
	}
	deadline := cmp.Or(req.RequestedAt, m.Event.Time()).Add(time.Duration(req.Trust.WaitSeconds) * time.Second)
	for waited := false; ; waited = true {
		checks, err := verify.Evidence(ctx, v.Registry, ref, opts)
		if err == nil {
			rep.Checks = append(rep.Checks, checks...)
			return rep, nil
		}
		if !errors.Is(err, verify.ErrUnsigned) || time.Now().After(deadline) {
			return rep, err
		}
		if !waited {
			v.cfg.Log().Info(fmt.Sprintf("%s is not signed yet (%v): waiting until %s for its signature", ref, err, deadline.Format(time.RFC3339)),
				"run_id", events.RunID(m.Event))
		}
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-time.After(min(2*time.Second, time.Until(deadline)+time.Millisecond)):
		}
	}
}

// trusting is how an admission is proven: with its rule's keys, when it
// names any, instead of the verifier's own (whose evidence is still
// proven, but whose signature does not count); and, when the rule asks
// for it, a provenance from its builder and source.
func (v *verifier) trusting(t events.Trust) (verify.Options, error) {
	opts := v.cfg.Proof
	if len(t.Keys) > 0 {
		// The pipeline's own evidence (its verification summaries) is
		// proven with its own keys; the signature asked for is the rule's.
		opts.Also, opts.Keys = opts.Keys, make([]sign.Verifier, len(t.Keys))
		for i, k := range t.Keys {
			key, err := sign.ParseVerifier([]byte(k))
			if err != nil {
				return opts, &failure.Error{Class: failure.Schema, Stage: "verify", Err: fmt.Errorf("the rule's key %d: %w", i+1, err),
					Hint: "name the signer's public key (cosign.pub) in the rule's keys"}
			}
			opts.Keys[i] = key
		}
	}
	if t.Provenance != nil {
		if len(opts.Keys) == 0 {
			return opts, &failure.Error{Class: failure.Schema, Stage: "verify", Err: fmt.Errorf("the rule requires a provenance, and names no key to check its signature with"),
				Hint: "add the builder's public key to the rule's keys (or DIGESTLINE_TRUSTED_KEYS)"}
		}
		opts.Provenance = &verify.Provenance{Builder: t.Provenance.Builder, Source: t.Provenance.Source}
	}
	return opts, nil
}
