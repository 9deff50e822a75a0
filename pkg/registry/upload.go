package registry

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/digestline/digestline/pkg/failure"
	"github.com/opencontainers/go-digest"
)

// uploadSession is a chunked upload in progress: where to send the next
// chunk, and how many bytes the registry has.
type uploadSession struct {
	location *url.URL
	offset   int64
	minChunk int64 // OCI-Chunk-Min-Length, if the registry sets one
}

// startUpload opens an upload session.
func (r *Repo) startUpload(ctx context.Context) (*uploadSession, error) {
	resp, err := r.do(ctx, http.MethodPost, r.url("/v2/"+r.name.RepositoryStr()+"/blobs/uploads/"), nil, nil)
	if err != nil {
		return nil, err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusAccepted {
		return nil, classifyResponse(resp, r.name)
	}
	s := &uploadSession{}
	if err := s.update(resp); err != nil {
		return nil, err
	}
	s.offset = 0 // a new session is empty, whatever Range says (distribution sends 0-0)
	s.minChunk, _ = strconv.ParseInt(resp.Header.Get("OCI-Chunk-Min-Length"), 10, 64)
	return s, nil
}

// update takes the session's next location and received range from a response.
func (s *uploadSession) update(resp *http.Response) error {
	loc, err := resp.Location()
	if err != nil {
		return &failure.Error{Class: failure.Schema, Status: resp.StatusCode, Err: fmt.Errorf("upload session without a Location: %w", err), Hint: "the registry is not OCI distribution compliant"}
	}
	s.location = loc
	if rng := resp.Header.Get("Range"); rng != "" {
		// "0-N": N is the last byte received, inclusive. Distribution reports
		// an empty session as 0-0 too; digestline never leaves exactly one
		// byte in a session (chunks are larger), so 0-0 reads as empty.
		_, end, ok := strings.Cut(strings.TrimPrefix(rng, "bytes="), "-")
		n, err := strconv.ParseInt(end, 10, 64)
		if !ok || err != nil {
			return &failure.Error{Class: failure.Schema, Status: resp.StatusCode, Err: fmt.Errorf("upload Range %q", rng), Hint: "the registry reported an unreadable upload range"}
		}
		s.offset = 0
		if n > 0 {
			s.offset = n + 1
		}
	}
	return nil
}

// status asks the registry how much of the session it has, so an
// interrupted upload resumes where the data stops instead of starting over.
func (r *Repo) status(ctx context.Context, s *uploadSession) error {
	resp, err := r.do(ctx, http.MethodGet, s.location.String(), nil, nil)
	if err != nil {
		return err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		return classifyResponse(resp, r.name)
	}
	s.offset = 0
	return s.update(resp)
}

// patch sends the next n bytes of the blob.
func (r *Repo) patch(ctx context.Context, s *uploadSession, chunk io.Reader, n int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, s.location.String(), chunk)
	if err != nil {
		return &failure.Error{Class: failure.Schema, Err: err}
	}
	req.ContentLength = n
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", s.offset, s.offset+n-1))
	resp, err := r.client.Do(req)
	if err != nil {
		return r.classifyTransport(ctx, err)
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusAccepted {
		return classifyResponse(resp, r.name)
	}
	before := s.offset
	if err := s.update(resp); err != nil {
		return err
	}
	if resp.Header.Get("Range") == "" {
		s.offset = before + n
	}
	return nil
}

// finish closes the session with the blob's digest, sending the last (or
// only) size bytes of content with it.
func (r *Repo) finish(ctx context.Context, s *uploadSession, d digest.Digest, content io.Reader, size int64) error {
	u := *s.location
	q := u.Query()
	q.Set("digest", d.String())
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), content)
	if err != nil {
		return &failure.Error{Class: failure.Schema, Err: err}
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := r.client.Do(req)
	if err != nil {
		return r.classifyTransport(ctx, err)
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusCreated {
		return classifyResponse(resp, r.name)
	}
	return nil
}
