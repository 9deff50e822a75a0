package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/registry/transport"
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
	defer transport.Drain(resp)
	if resp.StatusCode != http.StatusAccepted {
		return nil, transport.Classify(resp, r.name)
	}
	s := &uploadSession{}
	if err := s.update(resp); err != nil {
		return nil, err
	}
	s.offset = 0 // a new session is empty, whatever Range says (distribution sends 0-0)
	s.minChunk, _ = strconv.ParseInt(resp.Header.Get("OCI-Chunk-Min-Length"), 10, 64)
	return s, nil
}

// SmallBlob is the size up to which a blob is handled whole in memory:
// configs, signatures, provenance, SBOMs, small layers. It goes up in a
// single POST (POST .../blobs/uploads/?digest=, the blob as the body) to a
// registry that takes one, and is sent again in a session to one that does
// not; a Shared Repo reads it once for all its readers.
const SmallBlob = 1 << 20

// postBlob sends a whole blob in the POST that opens an upload (the
// distribution spec's single POST, which registries MAY support). The
// registry keeps it (201: s is nil), or opens a session as for an empty
// POST (202), where the blob must then go up: distribution does, as the
// spec says a registry without single POSTs SHOULD.
func (r *Repo) postBlob(ctx context.Context, d digest.Digest, content []byte) (s *uploadSession, err error) {
	u := r.url("/v2/"+r.name.RepositoryStr()+"/blobs/uploads/") + "?digest=" + url.QueryEscape(d.String())
	resp, err := r.do(ctx, http.MethodPost, u, bytes.NewReader(content), http.Header{"Content-Type": {"application/octet-stream"}})
	if err != nil {
		return nil, err
	}
	defer transport.Drain(resp)
	switch resp.StatusCode {
	case http.StatusCreated:
		return nil, nil
	case http.StatusAccepted:
		s := &uploadSession{}
		if err := s.update(resp); err != nil {
			return nil, err
		}
		s.offset = 0 // it kept nothing: the blob was not taken
		return s, nil
	}
	return nil, transport.Classify(resp, r.name)
}

// refusesSinglePost reports whether a single POST's failure says the
// registry takes no content in a POST (rather than that something else
// went wrong): 400, 405, 413, 415 or 501.
func refusesSinglePost(err error) bool {
	var e *failure.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Status {
	case http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusRequestEntityTooLarge,
		http.StatusUnsupportedMediaType, http.StatusNotImplemented:
		return true
	}
	return false
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
	defer transport.Drain(resp)
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		return transport.Classify(resp, r.name)
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
	defer transport.Drain(resp)
	if resp.StatusCode != http.StatusAccepted {
		return transport.Classify(resp, r.name)
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
	defer transport.Drain(resp)
	if resp.StatusCode != http.StatusCreated {
		return transport.Classify(resp, r.name)
	}
	return nil
}
