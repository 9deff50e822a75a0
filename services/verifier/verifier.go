package verifier

import (
	"context"
	"errors"
	"fmt"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/service"
	"github.com/google/go-containerregistry/pkg/name"
	"go.opentelemetry.io/otel/metric"
)

// Config configures the verifier.
type Config struct {
	service.Deps
	// Registry pulls; nil means a client with credentials from the
	// environment or the docker config.
	Registry *registry.Client
	// Jobs bounds blobs hashed at once (default 4).
	Jobs int
}

// Run consumes push.completed until ctx is cancelled.
func Run(ctx context.Context, cfg Config) error {
	bus := cfg.Bus("verifier")
	if cfg.Registry == nil {
		cfg.Registry = cfg.Deps.Registry()
	}
	v := &verifier{cfg: cfg, bus: bus}
	// Instrument errors only say a name is malformed; this one is fixed.
	v.bytesVerified, _ = cfg.Meters().Meter("github.com/digestline/digestline/services/verifier").Int64Counter("digestline.verify.bytes",
		metric.WithDescription("Bytes pulled and hashed by verifications that passed"), metric.WithUnit("By"))
	return bus.Consume(ctx, events.ConsumerSpec{Durable: "verifier", Events: []events.Name{events.PushCompleted}}, v.handle)
}

type verifier struct {
	cfg           Config
	bus           *events.Bus
	bytesVerified metric.Int64Counter
}

func (v *verifier) handle(ctx context.Context, m events.Message) error {
	push, err := events.Decode[events.PushResult](m.Event)
	if err != nil {
		return err
	}
	evidence := push.Evidence
	evidence.Push = m.Event.ID()
	log := v.cfg.Log().With("run_id", events.RunID(m.Event))

	target, err := name.ParseReference(push.Target)
	if err != nil {
		return events.Permanent(err)
	}
	ref := target.Context().Digest(push.Digest)
	ctx, span := v.cfg.Traces().Tracer("github.com/digestline/digestline/services/verifier").Start(ctx, "verify "+ref.String())
	defer span.End()
	rep, err := Verify(ctx, v.cfg.Registry, ref, &push.Graph, v.cfg.Jobs)
	if tag, ok := target.(name.Tag); ok && err == nil {
		rep.Checks = append(rep.Checks, fmt.Sprintf("[VERIFY] tag %s points at the digest", tag.TagStr()))
		err = CheckTag(ctx, v.cfg.Registry, tag, rep.Digest)
		if drift := (*Error)(nil); errors.As(err, &drift) && drift.Class == registry.ClassConflict {
			if _, err := v.bus.Emit(ctx, m.Event, events.DriftDetected, "", events.Drift{
				Target: push.Target, Tag: tag.TagStr(), Expected: push.Digest, Found: drift.Mismatches[0].Found,
			}); err != nil {
				return err
			}
		}
	}
	var verr *Error
	if errors.As(err, &verr) && verr.Class.Transient() && !errors.Is(err, context.Canceled) && !m.LastTry {
		return err // the registry failed for a moment: verify again, from the start
	}
	if errors.As(err, &verr) {
		span.RecordError(verr)
		log.Warn("[VERIFY] FAILED", "class", verr.Class, "path", verr.Path, "error", verr.Err, "hint", verr.Hint)
		_, err := v.bus.Emit(ctx, m.Event, events.VerifyFailed, "", events.Failure{
			Target: push.Target, Digest: push.Digest, Stage: "verify", Class: string(verr.Class), Message: verr.Err.Error(),
			Hint: verr.Hint, Path: verr.Path, Mismatches: verr.Mismatches, Evidence: evidence,
		})
		return err
	}
	if err != nil {
		return err
	}
	for _, c := range rep.Checks {
		log.Info(c, "digest", push.Digest)
	}
	v.bytesVerified.Add(ctx, rep.BytesHashed)
	_, err = v.bus.Emit(ctx, m.Event, events.VerifyCompleted, "", events.VerifyResult{
		Target: push.Target, Digest: push.Digest, Descriptors: rep.Descriptors, BytesHashed: rep.BytesHashed,
		Checks: rep.Checks, PromoteTo: push.PromoteTo, Promotion: push.Promotion, Evidence: evidence,
	})
	return err
}
