package registry

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

func (p *pushRun) upload(ctx context.Context, r *events.StageReport) error {
	if p.manifestPresent || len(p.missing) == 0 {
		p.sendAttachedAhead(ctx)
		return skip("nothing missing")
	}
	// Largest first: the registry hashes each blob on one core, so the
	// biggest one must not be left running alone at the end.
	order := slices.Clone(p.missing)
	slices.SortStableFunc(order, func(a, b v1.Descriptor) int { return cmp.Compare(b.Size, a.Size) })
	p.mu.Lock()
	order = slices.DeleteFunc(order, func(b v1.Descriptor) bool { return p.uploaded[b.Digest] })
	p.mu.Unlock()
	if fn := p.opts.progress; fn != nil && !p.announced {
		p.announced = true // a retried stage resumes, it does not start from 0
		for _, b := range order {
			fn(b, 0)
		}
	}
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(p.c.jobs)
	for _, b := range order {
		eg.Go(func() error {
			sent, err := p.uploadOne(ectx, b)
			p.c.metrics.bytesPushed.Add(ctx, sent)
			p.mu.Lock()
			defer p.mu.Unlock()
			p.res.BytesUploaded += sent
			if err != nil {
				return err
			}
			p.uploaded[b.Digest] = true
			p.res.Uploaded++
			p.arrived(b)
			return nil
		})
	}
	err := eg.Wait()
	p.mu.Lock()
	r.Total, r.Uploaded, r.Bytes = len(p.missing), p.res.Uploaded, p.res.BytesUploaded
	p.mu.Unlock()
	r.Detail = fmt.Sprintf("%d/%d blobs, %s", r.Uploaded, r.Total, sizeString(r.Bytes))
	if err == nil {
		p.sendAttachedAhead(ctx) // now that the image's uploads told how the registry takes small blobs
	}
	return err
}

// uploadOne uploads one blob — whole, or in resumable chunks when it is big —
// and returns the bytes it sent.
func (p *pushRun) uploadOne(ctx context.Context, b v1.Descriptor) (int64, error) {
	release, err := p.c.limits.UploadSlot(ctx, p.ref.Context().RegistryStr())
	if err != nil {
		return 0, err
	}
	defer release()
	rc, err := p.src.Open(ctx, b.Digest)
	if err != nil {
		return 0, sourceError(err, "blob "+b.Digest.String())
	}
	defer rc.Close()
	p.mu.Lock()
	opened := p.mountSessions[b.Digest]
	delete(p.mountSessions, b.Digest) // used once: a retry opens its own
	p.mu.Unlock()
	if opened == nil && b.Size <= SmallBlob {
		if err := p.uploadSmall(ctx, b, rc); err != nil {
			return 0, err
		}
		return b.Size, nil
	}
	over, size := p.c.chunking(ctx, p.repo, b.Size)
	if over <= 0 || b.Size <= over {
		if opened == nil {
			err = p.repo.UploadBlob(ctx, b, p.watch(rc, b, 0))
		} else if err = p.repo.finish(ctx, opened, b.Digest, p.watch(rc, b, 0), b.Size); err != nil && !failure.As(err).Temporary() {
			return p.uploadStreamed(ctx, b) // the session the mount opened is gone: one of our own
		}
		if err != nil {
			return 0, err
		}
		return b.Size, nil
	}
	return p.uploadChunked(ctx, b, rc, opened, size)
}

// uploadChunked uploads blob b, read from rc, in chunks of size into a
// session: the one a mount opened, or one of a failed attempt (the registry
// is asked how far it got, and what it has is skipped, not sent again), or
// a new one. A registry that refuses the first chunk gets the blob streamed
// instead, now and for the rest of the process.
func (p *pushRun) uploadChunked(ctx context.Context, b v1.Descriptor, rc io.Reader, opened *uploadSession, size int64) (int64, error) {
	p.mu.Lock()
	s := p.sessions[b.Digest]
	p.mu.Unlock()
	if s != nil {
		if err := p.repo.status(ctx, s); err != nil {
			if failure.As(err).Temporary() {
				return 0, err
			}
			s = nil // the session expired: start over
		}
	}
	if s == nil {
		s = opened
	}
	if s == nil {
		var err error
		if s, err = p.repo.startUpload(ctx); err != nil {
			return 0, err
		}
	}
	p.mu.Lock()
	p.sessions[b.Digest] = s // for a retried stage to resume
	p.mu.Unlock()
	if _, err := io.CopyN(io.Discard, rc, s.offset); err != nil { // already at the registry: skipped, not re-sent
		return 0, fmt.Errorf("skip %d bytes of %s: %w", s.offset, b.Digest, err)
	}
	body := p.watch(rc, b, s.offset)
	var sent int64
	chunk := max(size, s.minChunk)
	for s.offset < b.Size {
		n := min(chunk, b.Size-s.offset)
		first := s.offset == 0
		if err := p.repo.patch(ctx, s, io.LimitReader(body, n), n); err != nil {
			if first && refusesChunks(err) {
				// Artifact Registry and others take no Content-Range: the
				// blob goes up streamed, now and from now on.
				p.c.chunks.Store(p.ref.Context().RegistryStr(), No)
				p.mu.Lock()
				delete(p.sessions, b.Digest)
				p.mu.Unlock()
				return p.uploadStreamed(ctx, b)
			}
			return sent, err
		}
		sent += n
	}
	if err := p.repo.finish(ctx, s, b.Digest, http.NoBody, 0); err != nil {
		return sent, err
	}
	p.mu.Lock()
	delete(p.sessions, b.Digest)
	p.mu.Unlock()
	return sent, nil
}

// uploadSmall uploads blob b, of at most SmallBlob bytes, read from rc: in
// one POST to a registry that takes a single POST, else in a session. The
// registry's answer to the first one is kept for the client's later pushes.
func (p *pushRun) uploadSmall(ctx context.Context, b v1.Descriptor, rc io.Reader) error {
	body, err := io.ReadAll(io.LimitReader(p.watch(rc, b, 0), b.Size+1))
	if err != nil {
		return readError(err, b)
	}
	if !oci.Matches(b, body) {
		return sourceError(fmt.Errorf("%d bytes that do not match the descriptor", len(body)), "blob "+b.Digest.String())
	}
	host := p.ref.Context().RegistryStr()
	if known, _ := p.c.singlePost.Load(host); known != No {
		s, err := p.repo.postBlob(ctx, b.Digest, body)
		switch {
		case err == nil && s == nil:
			p.c.singlePost.Store(host, Yes)
			return nil
		case err == nil: // a session instead: the blob goes up there
			p.c.singlePost.Store(host, No)
			return p.repo.finish(ctx, s, b.Digest, bytes.NewReader(body), b.Size)
		case !refusesSinglePost(err):
			return err
		}
		p.c.singlePost.Store(host, No)
	}
	return p.repo.UploadBlob(ctx, b, bytes.NewReader(body))
}

// readError classifies a failure to read blob b from where it is pushed
// from: the build's blob store, or the registry a copy reads.
func readError(err error, b v1.Descriptor) error {
	if errors.Is(err, oci.ErrStore) || errors.Is(err, oci.ErrBlobNotFound) {
		return sourceError(err, "blob "+b.Digest.String())
	}
	return &failure.Error{Class: failure.Transport, Err: fmt.Errorf("read blob %s from its source: %w", b.Digest, err),
		Hint: "the source stopped sending the blob: it is retried"}
}

// uploadStreamed uploads blob b whole, read again from the start.
func (p *pushRun) uploadStreamed(ctx context.Context, b v1.Descriptor) (int64, error) {
	rc, err := p.src.Open(ctx, b.Digest)
	if err != nil {
		return 0, sourceError(err, "blob "+b.Digest.String())
	}
	defer rc.Close()
	if err := p.repo.UploadBlob(ctx, b, p.watch(rc, b, 0)); err != nil {
		return 0, err
	}
	return b.Size, nil
}

// refusesChunks reports whether a chunk's failure says the registry takes
// no chunked uploads: 400, 416 or 501, or the code BLOB_UPLOAD_INVALID or
// UNSUPPORTED.
func refusesChunks(err error) bool {
	var e *failure.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Status {
	case http.StatusBadRequest, http.StatusRequestedRangeNotSatisfiable, http.StatusNotImplemented:
		return true
	}
	return slices.Contains(e.Codes, "BLOB_UPLOAD_INVALID") || slices.Contains(e.Codes, "UNSUPPORTED")
}

// watch reports reads of blob b, the registry already holding its first
// done bytes, when the push has a Progress; otherwise r goes to the
// transport as it is.
func (p *pushRun) watch(r io.Reader, b v1.Descriptor, done int64) io.Reader {
	if p.opts.progress == nil {
		return r
	}
	p.opts.progress(b, done)
	return &progressReader{r: r, blob: b, done: done, fn: p.opts.progress}
}

// pushBlob uploads one blob unless the registry has it. A small blob goes
// up unasked to a registry known to take single POSTs: one request, as
// asking would be (the registry keeps one copy of a blob either way).
func (p *pushRun) pushBlob(ctx context.Context, b v1.Descriptor) (uploaded bool, err error) {
	small := b.Size <= SmallBlob
	if known, _ := p.c.singlePost.Load(p.ref.Context().RegistryStr()); !small || known != Yes {
		exists, err := p.repo.HeadBlob(ctx, b.Digest)
		if err != nil || exists {
			return false, err
		}
	}
	rc, err := p.src.Open(ctx, b.Digest)
	if err != nil {
		return false, sourceError(err, "blob "+b.Digest.String())
	}
	defer rc.Close()
	if small {
		return true, p.uploadSmall(ctx, b, rc)
	}
	return true, p.repo.UploadBlob(ctx, b, rc)
}
