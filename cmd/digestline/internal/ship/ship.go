// Package ship is the client side of a run: it uploads a source tree to the
// blob store, requests the build, and follows the run's events until it is
// promoted or fails. It needs only a NATS connection, so it works against
// services on other machines.
package ship

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/digestline/digestline/cmd/digestline/internal/progress"
	"github.com/digestline/digestline/pkg/blobstore"
	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/runs"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Request is what to ship.
type Request struct {
	Dir    string // source tree
	Target string // image reference to push to
	Env    string // environment to promote to ("" = first of the chain)
	Spec   events.BuildSpec
	Tag    events.TagGuard
	// PageURL is the reporter's base URL, when known: ship prints the
	// run's page there.
	PageURL string
	// Quiet is how long the run may go without an event before ship says
	// what it waits for (default 15s; waitNotes).
	Quiet time.Duration
	// Notes is where that goes: by default with the run's lines, which
	// ShipJSON, whose output is events, drops.
	Notes io.Writer
}

// Check says what is wrong with req before anything is sent: a target
// that is no image reference, a source that is no directory.
func (r Request) Check() error {
	if _, err := name.ParseReference(r.Target); err != nil {
		return fmt.Errorf("target %q: %w (want registry/repository:tag)", r.Target, err)
	}
	if st, err := os.Stat(r.Dir); err != nil || !st.IsDir() {
		return fmt.Errorf("source %q is not a directory", r.Dir)
	}
	return nil
}

// Result is a promoted run.
type Result struct {
	RunID     string
	Promotion events.Promotion
	// Superseded is set, and Promotion empty, when a newer request for
	// the run's tag overtook it.
	Superseded *events.Supersession
}

// busTimeout bounds each request ship makes of the bus: while NATS is away,
// ship fails with a clear error instead of waiting out the whole run's
// timeout (JetStream only applies its own default when ctx has no deadline).
const busTimeout = 10 * time.Second

// Ship runs req through the pipeline on bus, writing the run's [STAGE],
// [VERIFY] and promotion lines to out as they happen.
func Ship(ctx context.Context, b *bus.Bus, req Request, out io.Writer) (Result, error) {
	return run(ctx, b, req, out, false)
}

// ShipJSON is Ship writing each of the run's events as one JSON line (the
// structured CloudEvent) instead of human lines.
func ShipJSON(ctx context.Context, b *bus.Bus, req Request, out io.Writer) (Result, error) {
	return run(ctx, b, req, out, true)
}

func run(ctx context.Context, b *bus.Bus, req Request, out io.Writer, asJSON bool) (Result, error) {
	if err := req.Check(); err != nil {
		return Result{}, err
	}
	ref, _ := name.ParseReference(req.Target) // checked
	js := b.JetStream()
	ctx, span := b.Tracer().Start(ctx, "ship "+ref.String(), trace.WithSpanKind(trace.SpanKindProducer))
	defer span.End()

	src, err := Upload(ctx, js, req.Dir)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		return Result{}, err
	}
	// Follow the run's subjects from before the request is published, so no
	// event is missed and no other run's event is even sent here.
	runID := uuid.NewString()
	cctx, cancel := context.WithTimeout(ctx, busTimeout)
	defer cancel()
	cons, err := js.OrderedConsumer(cctx, events.RunLogStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.RunLogFilter(runID)}})
	if err != nil {
		return Result{}, fmt.Errorf("follow the run (is the bus provisioned?): %w", err)
	}
	iter, err := cons.Messages()
	if err != nil {
		return Result{}, fmt.Errorf("follow the run: %w", err)
	}
	defer iter.Stop()
	stop := context.AfterFunc(ctx, iter.Stop)
	defer stop()

	human, closeView, err := humanView(js, runID, out, asJSON)
	if err != nil {
		return Result{}, err
	}
	defer closeView()
	pctx, cancel := context.WithTimeout(ctx, busTimeout)
	defer cancel()
	if _, err := b.Start(pctx, events.BuildRequested, runID, ref.Context().Name(), events.BuildRequest{
		Source: events.Source{Kind: events.SourceObject, Object: src.String()},
		Target: req.Target, Spec: req.Spec, PromoteTo: req.Env, Tag: req.Tag,
	}); err != nil {
		return Result{}, err
	}
	fmt.Fprintf(human, "run %s: building %s\n", runID, req.Target)
	if req.PageURL != "" {
		fmt.Fprintf(human, "  page %s/runs/%s\n", req.PageURL, runID)
	}
	notesOut := req.Notes
	if notesOut == nil {
		notesOut = human
	}
	notes := startWaitNotes(ctx, js, notesOut, cmp.Or(req.Quiet, 15*time.Second))
	defer notes.stop()
	res, err := follow(iter, runID, human, func(raw []byte, run *runs.Run) {
		notes.event(run.WaitsFor)
		if asJSON {
			_, _ = out.Write(append(raw, '\n'))
		}
	})
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("run %s: %w (the run goes on; see GET /v1/runs/%s)", runID, ctx.Err(), runID)
		}
		span.SetStatus(codes.Error, err.Error())
	}
	return res, err
}

// humanView is where a run's lines go: a progress view of out, which on a
// terminal also draws the pusher's upload progress, caught live (it is
// not stored); nowhere with JSON. closeView closes it.
func humanView(js jetstream.JetStream, runID string, out io.Writer, asJSON bool) (_ io.Writer, closeView func(), _ error) {
	if asJSON {
		return io.Discard, func() {}, nil
	}
	view := progress.New(out)
	if !view.Live() {
		return view, view.Close, nil
	}
	sub, err := js.Conn().Subscribe(events.ProgressSubject(runID), func(m *nats.Msg) {
		var frame events.PushProgress
		if json.Unmarshal(m.Data, &frame) == nil {
			for _, b := range frame.Blobs {
				view.Blob(b.Descriptor, b.Done)
			}
		}
	})
	if err != nil {
		view.Close()
		return nil, nil, fmt.Errorf("follow the run's progress: %w", err)
	}
	return view, func() { _ = sub.Unsubscribe(); view.Close() }, nil
}

// Upload streams dir as a tarball into the blob store, keyed by its digest:
// the object a build.requested with an "object" source names.
func Upload(ctx context.Context, js jetstream.JetStream, dir string) (digest.Digest, error) {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", fmt.Errorf("source %q is not a directory", dir)
	}
	tmp, err := os.CreateTemp("", "digestline-ship-*.tar")
	if err != nil {
		return "", err
	}
	defer func() { _ = tmp.Close(); _ = os.Remove(tmp.Name()) }()
	h := sha256.New()
	if err := oci.WriteTar(ctx, io.MultiWriter(tmp, h), dir, time.Time{}); err != nil {
		return "", fmt.Errorf("pack %s: %w", dir, err)
	}
	size, err := tmp.Seek(0, io.SeekCurrent) // the file's end: everything written
	if err != nil {
		return "", err
	}
	desc := v1.Descriptor{MediaType: "application/x-tar", Digest: digest.NewDigest(digest.SHA256, h), Size: size}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	octx, cancel := context.WithTimeout(ctx, busTimeout)
	defer cancel()
	store, err := blobstore.Open(octx, js)
	if err != nil {
		return "", err
	}
	// At worst 1 MiB/s: a bus that stops answering mid-upload fails the
	// command instead of holding it until the user's --timeout.
	pctx, cancel := context.WithTimeout(ctx, busTimeout+time.Duration(size>>20)*time.Second)
	defer cancel()
	if err := store.Put(pctx, desc, tmp); err != nil {
		return "", fmt.Errorf("upload %s: %w", dir, err)
	}
	return desc.Digest, nil
}

// follow prints the run's events until one ends it; raw sees each of the
// run's events as it arrived. A run that ends without promotion is an
// *runs.Error.
func follow(iter jetstream.MessagesContext, runID string, out io.Writer, raw func([]byte, *runs.Run)) (Result, error) {
	run, err := runs.FollowMessages(iter, runID, func(data []byte, run *runs.Run, lines []string) {
		raw(data, run)
		for _, line := range lines {
			fmt.Fprintln(out, line)
		}
	})
	if err != nil {
		return Result{RunID: runID}, err
	}
	if run.Superseded != nil { // overtaken by a newer request for the tag: no failure
		return Result{RunID: runID, Superseded: run.Superseded}, nil
	}
	return Result{RunID: runID, Promotion: *run.Promotion}, nil
}
