package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry/transport"
	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
)

// Support is what a probe found a registry to do: yes, no, or unknown
// (with why in the capability's note).
type Support string

// The answers of a probe.
const (
	Yes     Support = "yes"
	No      Support = "no"
	Unknown Support = "unknown"
)

// Capability is one thing a registry does or does not do.
type Capability struct {
	Support Support `json:"support"`
	Note    string  `json:"note,omitempty"`
}

// Capabilities is what a registry supports, as Probe found it.
type Capabilities struct {
	Registry   string `json:"registry"`
	Repository string `json:"repository"`
	// Auth is the registry's scheme: none, basic or bearer.
	Auth           string     `json:"auth"`
	ReferrersAPI   Capability `json:"referrersApi"`
	ChunkedUploads Capability `json:"chunkedUploads"`
	// ChunkMinLength is the registry's OCI-Chunk-Min-Length, 0 when it names none.
	ChunkMinLength int64      `json:"chunkMinLength,omitempty"`
	Mount          Capability `json:"crossRepositoryMount"`
	DigestHeader   Capability `json:"digestHeader"`
	BlobDelete     Capability `json:"blobDelete"`
	TagPagination  Capability `json:"tagPagination"`
}

// emptyJSON is the digest of "{}", the OCI empty descriptor's blob, which
// repositories holding artifacts often have (a mount source to try).
const emptyJSON = digest.Digest("sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")

// Probe finds what the registry of repo supports, leaving nothing behind:
// upload sessions it opens are cancelled, and it deletes nothing that
// exists. What it learns of chunked uploads is kept for the client's
// pushes to that registry (big blobs go in chunks where they work, and
// streamed where they do not).
func (c *Client) Probe(ctx context.Context, repo name.Repository) (Capabilities, error) {
	caps := Capabilities{Registry: repo.RegistryStr(), Repository: repo.RepositoryStr()}
	if c.insecure[repo.RegistryStr()] {
		reg, err := name.NewRegistry(repo.RegistryStr(), name.Insecure)
		if err != nil {
			return caps, &failure.Error{Class: failure.Schema, Err: err}
		}
		repo.Registry = reg
	}
	ping, err := ggcr.Ping(ctx, repo.Registry, c.base)
	if err != nil {
		return caps, (&Repo{name: repo, timeout: c.timeout}).classifyTransport(ctx, err)
	}
	caps.Auth = strings.ToLower(ping.Scheme)
	if caps.Auth == "" {
		caps.Auth = "none"
	}
	r, err := c.Open(ctx, repo, true)
	pushable := err == nil
	if !pushable {
		if r, err = c.Open(ctx, repo, false); err != nil {
			return caps, err
		}
	}

	if _, ok, err := r.referrersAPI(ctx, emptyJSON); err != nil {
		caps.ReferrersAPI = Capability{Unknown, err.Error()}
	} else if ok {
		caps.ReferrersAPI = Capability{Support: Yes}
	} else {
		caps.ReferrersAPI = Capability{No, "the sha256-<hex> fallback tag is used"}
	}

	if !pushable {
		why := "the credential has no push access to " + repo.RepositoryStr()
		caps.ChunkedUploads, caps.Mount, caps.BlobDelete = Capability{Unknown, why}, Capability{Unknown, why}, Capability{Unknown, why}
	} else {
		caps.ChunkedUploads, caps.ChunkMinLength = r.probeChunks(ctx)
		c.learnChunks(repo.RegistryStr(), caps.ChunkedUploads)
		caps.Mount = r.probeMount(ctx)
		caps.BlobDelete = r.probeDelete(ctx)
	}
	caps.DigestHeader, caps.TagPagination = r.probeTags(ctx)
	return caps, nil
}

// probeChunks opens an upload session, sends one byte as a chunk, and
// cancels the session.
func (r *Repo) probeChunks(ctx context.Context) (Capability, int64) {
	s, err := r.startUpload(ctx)
	if err != nil {
		return Capability{Unknown, err.Error()}, 0
	}
	defer r.cancelUpload(ctx, s)
	err = r.patch(ctx, s, strings.NewReader("x"), 1)
	switch {
	case err == nil:
		return Capability{Support: Yes}, s.minChunk
	case refusesChunks(err):
		return Capability{No, "a blob goes up in one streamed upload: " + err.Error()}, s.minChunk
	}
	return Capability{Unknown, err.Error()}, s.minChunk
}

// cancelUpload deletes an upload session (a registry that cannot lets it
// expire).
func (r *Repo) cancelUpload(ctx context.Context, s *uploadSession) {
	if resp, err := r.do(ctx, http.MethodDelete, s.location.String(), nil, nil); err == nil {
		transport.Drain(resp)
	}
}

// probeMount asks to mount the empty JSON blob from the repository itself:
// 201 is a mount, 202 an upload session instead (cancelled).
func (r *Repo) probeMount(ctx context.Context) Capability {
	u := r.url("/v2/"+r.name.RepositoryStr()+"/blobs/uploads/") + "?" + url.Values{"mount": {emptyJSON.String()}, "from": {r.name.RepositoryStr()}}.Encode()
	resp, err := r.do(ctx, http.MethodPost, u, nil, nil)
	if err != nil {
		return Capability{Unknown, err.Error()}
	}
	defer transport.Drain(resp)
	switch resp.StatusCode {
	case http.StatusCreated:
		return Capability{Support: Yes}
	case http.StatusAccepted:
		if loc, err := resp.Location(); err == nil {
			r.cancelUpload(ctx, &uploadSession{location: loc})
		}
		return Capability{Unknown, "the registry answered with an upload session: it mounts only blobs it holds, and this repository holds no empty JSON blob to try"}
	}
	return Capability{No, transport.Classify(resp, r.name).Error()}
}

// probeDelete deletes a blob that does not exist: 404 or 202 says deletes
// are served, 405 that they are not.
func (r *Repo) probeDelete(ctx context.Context) Capability {
	resp, err := r.do(ctx, http.MethodDelete, r.repoURL("blobs", digest.FromString("digestline probe: no such blob").String()), nil, nil)
	if err != nil {
		return Capability{Unknown, err.Error()}
	}
	defer transport.Drain(resp)
	switch resp.StatusCode {
	case http.StatusNotFound, http.StatusAccepted:
		return Capability{Support: Yes}
	case http.StatusMethodNotAllowed:
		return Capability{No, "the registry serves no DELETE"}
	}
	return Capability{Unknown, transport.Classify(resp, r.name).Error()}
}

// probeTags lists the tags, then one tag per page: a Link header says the
// registry pages, one tag of several without it that it drops the rest;
// the first tag's manifest HEAD says whether it sends Docker-Content-Digest.
func (r *Repo) probeTags(ctx context.Context) (digestHeader, pagination Capability) {
	all, err := r.Tags(ctx, 0)
	if err != nil {
		return Capability{Unknown, err.Error()}, Capability{Unknown, err.Error()}
	}
	resp, err := r.do(ctx, http.MethodGet, r.url("/v2/"+r.name.RepositoryStr()+"/tags/list?n=1"), nil, nil)
	if err != nil {
		return Capability{Unknown, err.Error()}, Capability{Unknown, err.Error()}
	}
	var body struct {
		Tags []string `json:"tags"`
	}
	err = decodeJSON(resp, &body)
	link := resp.Header.Get("Link")
	transport.Drain(resp)
	if err != nil {
		return Capability{Unknown, err.Error()}, Capability{Unknown, err.Error()}
	}
	pagination = Capability{Unknown, "the repository has fewer than two tags"}
	switch {
	case link != "":
		pagination = Capability{Support: Yes}
	case len(body.Tags) > 1:
		pagination = Capability{No, "asked for one tag, it sent " + strconv.Itoa(len(body.Tags))}
	case len(all) > 1:
		pagination = Capability{No, fmt.Sprintf("asked for one tag of %d, it sent one and no Link to the rest", len(all))}
	}
	if len(body.Tags) == 0 {
		return Capability{Unknown, "the repository has no tag to read a manifest by"}, pagination
	}
	head, err := r.do(ctx, http.MethodHead, r.repoURL("manifests", body.Tags[0]), nil, http.Header{"Accept": {manifestAccept}})
	if err != nil {
		return Capability{Unknown, err.Error()}, pagination
	}
	transport.Drain(head)
	if head.StatusCode != http.StatusOK {
		return Capability{Unknown, transport.Classify(head, r.name).Error()}, pagination
	}
	if _, err := digest.Parse(head.Header.Get("Docker-Content-Digest")); err != nil {
		return Capability{No, "digestline reads and hashes manifests instead"}, pagination
	}
	return Capability{Support: Yes}, pagination
}

// decodeJSON reads a 200 answer's JSON body into v.
func decodeJSON(resp *http.Response, v any) error {
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, oci.MaxManifestSize)).Decode(v)
}

// String is the capabilities as lines for people.
func (c Capabilities) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "registry %s (repository %s)\n", c.Registry, c.Repository)
	fmt.Fprintf(&b, "  auth                     %s\n", c.Auth)
	line := func(what string, cp Capability) {
		fmt.Fprintf(&b, "  %-24s %s", what, cp.Support)
		if cp.Note != "" {
			fmt.Fprintf(&b, " (%s)", cp.Note)
		}
		b.WriteString("\n")
	}
	line("referrers API", c.ReferrersAPI)
	line("chunked uploads", c.ChunkedUploads)
	if c.ChunkMinLength > 0 {
		fmt.Fprintf(&b, "  %-24s %d bytes\n", "minimum chunk", c.ChunkMinLength)
	}
	line("cross-repository mount", c.Mount)
	line("digest header", c.DigestHeader)
	line("blob delete", c.BlobDelete)
	line("tag list pagination", c.TagPagination)
	return b.String()
}
