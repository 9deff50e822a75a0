package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry/transport"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// manifestAccept lists every manifest type digestline reads.
var manifestAccept = strings.Join([]string{
	v1.MediaTypeImageManifest, v1.MediaTypeImageIndex,
	oci.MediaTypeDockerManifest, oci.MediaTypeDockerManifestList,
}, ", ")

// Repo is an authenticated connection to one repository.
type Repo struct {
	name    name.Repository
	client  *http.Client
	timeout time.Duration // the client's: how long the registry may stay silent
	reads   *sharedReads  // when Shared: reads shared by its users
	listed  *listedTags   // when WithTags: the repository's tags
	proven  bool          // credentials were sent and accepted (never for anonymous)
}

var _ oci.BlobReader = (*Repo)(nil)

func (r *Repo) url(path string) string {
	return r.name.Registry.Scheme() + "://" + r.name.RegistryStr() + path
}

func (r *Repo) repoURL(kind, ref string) string {
	return r.url("/v2/" + r.name.RepositoryStr() + "/" + kind + "/" + ref)
}

// do sends a request, classifying a transport failure.
func (r *Repo) do(ctx context.Context, method, u string, body io.Reader, hdr http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, &failure.Error{Class: failure.Schema, Err: err, Hint: "the reference or URL is malformed"}
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, r.classifyTransport(ctx, err)
	}
	return resp, nil
}

// classifyTransport classifies an error that came back instead of an
// answer from r's registry (transport.ClassifyError).
func (r *Repo) classifyTransport(ctx context.Context, err error) *failure.Error {
	return transport.ClassifyError(ctx, err, r.name, r.timeout)
}

// HeadManifest returns the descriptor a tag or digest resolves to, and false
// when the registry does not have it.
func (r *Repo) HeadManifest(ctx context.Context, ref string) (v1.Descriptor, bool, error) {
	resp, err := r.do(ctx, http.MethodHead, r.repoURL("manifests", ref), nil, http.Header{"Accept": {manifestAccept}})
	if err != nil {
		return v1.Descriptor{}, false, err
	}
	defer transport.Drain(resp)
	switch resp.StatusCode {
	case http.StatusOK:
		d, err := digest.Parse(resp.Header.Get("Docker-Content-Digest"))
		if err != nil {
			// ECR, Artifactory and Red Hat registries answer without the
			// header (it is a SHOULD): read the manifest and hash it.
			_, desc, err := r.GetManifest(ctx, ref)
			return desc, err == nil, err
		}
		return v1.Descriptor{MediaType: resp.Header.Get("Content-Type"), Digest: d, Size: resp.ContentLength}, true, nil
	case http.StatusNotFound:
		return v1.Descriptor{}, false, nil
	}
	return v1.Descriptor{}, false, transport.Classify(resp, r.name)
}

// GetManifest fetches a manifest by tag or digest. When ref is a digest the
// content is checked against it: a registry serving other bytes under a
// digest is an integrity failure.
func (r *Repo) GetManifest(ctx context.Context, ref string) ([]byte, v1.Descriptor, error) {
	if _, err := digest.Parse(ref); err != nil || r.reads == nil {
		return r.getManifest(ctx, ref)
	}
	m, err := read(ctx, r.reads, "manifest "+ref, func() (manifestRead, error) {
		b, desc, err := r.getManifest(ctx, ref)
		return manifestRead{b, desc}, err
	})
	return m.body, m.desc, err
}

func (r *Repo) getManifest(ctx context.Context, ref string) ([]byte, v1.Descriptor, error) {
	resp, err := r.do(ctx, http.MethodGet, r.repoURL("manifests", ref), nil, http.Header{"Accept": {manifestAccept}})
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	defer transport.Drain(resp)
	if resp.StatusCode != http.StatusOK {
		return nil, v1.Descriptor{}, transport.Classify(resp, r.name)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, oci.MaxManifestSize+1))
	if err != nil {
		return nil, v1.Descriptor{}, r.classifyTransport(ctx, err)
	}
	if len(b) > oci.MaxManifestSize {
		return nil, v1.Descriptor{}, &failure.Error{Class: failure.Schema, Err: fmt.Errorf("manifest %s is larger than %d bytes", ref, oci.MaxManifestSize), Hint: "refusing an oversized manifest"}
	}
	// Hashed once, by the algorithm a digest reference asks for (sha256 for a tag).
	want, byDigest := digest.Parse(ref)
	algorithm := digest.Canonical
	if byDigest == nil && want.Algorithm().Available() {
		algorithm = want.Algorithm()
	}
	desc := v1.Descriptor{MediaType: resp.Header.Get("Content-Type"), Digest: algorithm.FromBytes(b), Size: int64(len(b))}
	if byDigest == nil && desc.Digest != want {
		return b, desc, &failure.Error{Class: failure.Integrity, Err: fmt.Errorf("manifest served as %s hashes to %s", want, desc.Digest),
			Hint: "the registry serves a manifest that does not match the requested digest: it is corrupted or substituted"}
	}
	if said, err := digest.Parse(resp.Header.Get("Docker-Content-Digest")); err == nil && said.Algorithm() == desc.Digest.Algorithm() && said != desc.Digest {
		return b, desc, &failure.Error{Class: failure.Integrity, Err: fmt.Errorf("manifest %s: the registry says its digest is %s, its bytes hash to %s", ref, said, desc.Digest),
			Hint: "the registry (or something between here and it) reports another digest than the manifest it serves: a tag resolved by that header would point at other content"}
	}
	return b, desc, nil
}

// PutManifest publishes a manifest under a tag or its digest. It reports
// whether the registry acknowledged the manifest's subject (the OCI-Subject
// header of a registry with the referrers API).
func (r *Repo) PutManifest(ctx context.Context, ref, mediaType string, body []byte) (subjectAcknowledged bool, err error) {
	return r.putManifest(ctx, ref, mediaType, body, "")
}

// putManifest is PutManifest with an optional If-Match precondition: a
// registry that honours it answers 412 (a conflict) when the manifest changed.
func (r *Repo) putManifest(ctx context.Context, ref, mediaType string, body []byte, ifMatch string) (bool, error) {
	hdr := http.Header{"Content-Type": {mediaType}}
	if ifMatch != "" {
		hdr.Set("If-Match", ifMatch)
	}
	resp, err := r.do(ctx, http.MethodPut, r.repoURL("manifests", ref), bytes.NewReader(body), hdr)
	if err != nil {
		return false, err
	}
	defer transport.Drain(resp)
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return false, transport.Classify(resp, r.name)
	}
	return resp.Header.Get("OCI-Subject") != "", nil
}

// HeadBlob reports whether the repository holds a blob.
func (r *Repo) HeadBlob(ctx context.Context, d digest.Digest) (bool, error) {
	resp, err := r.do(ctx, http.MethodHead, r.repoURL("blobs", d.String()), nil, nil)
	if err != nil {
		return false, err
	}
	defer transport.Drain(resp)
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, transport.Classify(resp, r.name)
}

// Open streams a blob; it implements oci.BlobReader. The caller verifies the
// content against its descriptor.
func (r *Repo) Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	resp, err := r.do(ctx, http.MethodGet, r.repoURL("blobs", d.String()), nil, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer transport.Drain(resp)
		return nil, transport.Classify(resp, r.name)
	}
	return resp.Body, nil
}

// ReadBlob reads the blob d describes, whole, and checks it against d's
// size and digest: for small blobs a caller parses (a signed payload, an
// SBOM), after bounding d.Size itself.
func (r *Repo) ReadBlob(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	b, err := r.BlobBytes(ctx, d)
	if err != nil {
		return nil, err
	}
	if !oci.Matches(d, b) {
		return nil, &failure.Error{Class: failure.Integrity, Err: fmt.Errorf("blob %s does not match its descriptor", d.Digest),
			Hint: "the registry serves other bytes for this digest: it is corrupted or substituted"}
	}
	return b, nil
}

// BlobBytes reads the blob d describes, whole, up to one byte past its
// size, and checks nothing: the caller does. A Shared Repo reads a blob up
// to 1 MiB once for all its readers.
func (r *Repo) BlobBytes(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	fetch := func() ([]byte, error) {
		rc, err := r.Open(ctx, d.Digest)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		b, err := io.ReadAll(io.LimitReader(rc, d.Size+1))
		if err != nil {
			return nil, r.classifyTransport(ctx, fmt.Errorf("read blob %s: %w", d.Digest, err))
		}
		return b, nil
	}
	if d.Size > SmallBlob {
		return fetch()
	}
	return read(ctx, r.reads, fmt.Sprintf("blob %s %d", d.Digest, d.Size), fetch)
}

// UploadBlob uploads content as one monolithic PUT in an upload session.
func (r *Repo) UploadBlob(ctx context.Context, desc v1.Descriptor, content io.Reader) error {
	s, err := r.startUpload(ctx)
	if err != nil {
		return err
	}
	return r.finish(ctx, s, desc.Digest, content, desc.Size)
}

// sizeString formats a byte count for stage lines.
func sizeString(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Manifests returns a BlobReader over the repository's manifests endpoint,
// so code that reads manifests by digest (oci.ReadManifest, oci.Walk) works
// on a registry as on a layout.
func (r *Repo) Manifests() oci.BlobReader { return manifestReader{r} }

// manifestReader reads manifests whole, checked against their digests,
// through GetManifest: once for all the readers of a Shared Repo.
type manifestReader struct{ r *Repo }

func (m manifestReader) Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	b, _, err := m.r.GetManifest(ctx, d.String())
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// mountBlob asks the registry to link a blob that another repository of the
// same registry holds, instead of uploading it. It reports whether the
// registry mounted it; any refusal (401, 403, 404) is "no", so the caller
// uploads instead. A registry that answers 202 opened an upload session
// instead (the spec's answer when it cannot mount): it is returned, for the
// upload to go into it rather than open another.
func (r *Repo) mountBlob(ctx context.Context, d digest.Digest, from string) (bool, *uploadSession, error) {
	u := r.url("/v2/"+r.name.RepositoryStr()+"/blobs/uploads/") + "?" + url.Values{"mount": {d.String()}, "from": {from}}.Encode()
	resp, err := r.do(ctx, http.MethodPost, u, nil, nil)
	if err != nil {
		return false, nil, err
	}
	defer transport.Drain(resp)
	switch {
	case resp.StatusCode == http.StatusCreated:
		return true, nil, nil
	case resp.StatusCode == http.StatusAccepted:
		s := &uploadSession{}
		if s.update(resp) != nil {
			return false, nil, nil // no usable session: upload in one of our own
		}
		s.offset = 0
		return false, s, nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return false, nil, transport.Classify(resp, r.name)
	}
	return false, nil, nil
}

// Sibling is another repository of the same registry, reached through this
// one's authenticated transport (its token must carry that repository's scope).
func (r *Repo) Sibling(path string) *Repo {
	return &Repo{name: r.name.Registry.Repo(path), client: r.client, timeout: r.timeout}
}

// maxTagPages bounds tag list pagination against a registry that loops.
const maxTagPages = 10000

// Tags lists the repository's tags, following the registry's pagination
// (the Link header) page by page.
func (r *Repo) Tags(ctx context.Context, pageSize int) ([]string, error) {
	tags, _, err := r.TagsIfChanged(ctx, pageSize, "")
	return tags, err
}

// ErrUnchanged is a conditional read the registry answered 304 Not
// Modified: what was read before still holds.
var ErrUnchanged = errors.New("unchanged since it was last read")

// TagsIfChanged is Tags, asking the registry to answer only if the list
// changed since the read whose ETag was etag (If-None-Match; "" asks
// nothing): ErrUnchanged when it did not. It returns the list's ETag ("" when
// the registry sends none: then every read is a whole one).
func (r *Repo) TagsIfChanged(ctx context.Context, pageSize int, etag string) ([]string, string, error) {
	next := r.url("/v2/" + r.name.RepositoryStr() + "/tags/list")
	if pageSize > 0 {
		next += "?n=" + strconv.Itoa(pageSize)
	}
	var (
		tags    []string
		newETag string
	)
	for page := 0; next != ""; page++ {
		if page == maxTagPages {
			return tags, "", &failure.Error{Class: failure.Schema, Err: fmt.Errorf("more than %d pages of tags", maxTagPages), Hint: "the registry's pagination does not end"}
		}
		var hdr http.Header
		if page == 0 && etag != "" {
			hdr = http.Header{"If-None-Match": {etag}}
		}
		resp, err := r.do(ctx, http.MethodGet, next, nil, hdr)
		if err != nil {
			return tags, "", err
		}
		if page == 0 {
			if resp.StatusCode == http.StatusNotModified {
				transport.Drain(resp)
				return nil, etag, ErrUnchanged
			}
			newETag = resp.Header.Get("ETag")
		}
		if resp.StatusCode != http.StatusOK {
			defer transport.Drain(resp)
			return tags, "", transport.Classify(resp, r.name)
		}
		var body struct {
			Tags []string `json:"tags"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, oci.MaxManifestSize)).Decode(&body)
		link := resp.Header.Get("Link")
		transport.Drain(resp)
		if err != nil {
			return tags, "", &failure.Error{Class: failure.Schema, Err: fmt.Errorf("tag list: %w", err), Hint: "the registry's tag list is not valid JSON"}
		}
		tags = append(tags, body.Tags...)
		next = nextLink(resp.Request.URL, link)
	}
	return tags, newETag, nil
}

// nextLink resolves the `<url>; rel="next"` entry of a Link header (the
// quotes are optional, RFC 8288) against base.
func nextLink(base *url.URL, header string) string {
	for _, link := range strings.Split(header, ",") {
		target, params, ok := strings.Cut(link, ";")
		target = strings.TrimSpace(target)
		if !ok || !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
			continue
		}
		for _, p := range strings.Split(params, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.EqualFold(k, "rel") && strings.EqualFold(strings.Trim(v, `"`), "next") {
				if u, err := base.Parse(target[1 : len(target)-1]); err == nil {
					return u.String()
				}
			}
		}
	}
	return ""
}
