package builder

import (
	"archive/tar"
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	format "github.com/go-git/go-git/v5/plumbing/format/config"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"go.opentelemetry.io/otel/attribute"
)

// A repository that keeps files in Git LFS commits a pointer for each
// (https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md), and the
// files themselves live on its LFS server. The checkout writes the files,
// as git lfs pull does: an image built from the pointers would build, and
// be wrong.

// lfsObject is what a pointer names: the file's sha256 and size.
type lfsObject struct {
	OID  string `json:"oid"`
	Size int64  `json:"size"`
}

// lfsPointerMax is the size a pointer stays under (git-lfs reads no
// larger blob as one).
const lfsPointerMax = 1024

var lfsOID = regexp.MustCompile(`^[0-9a-f]{64}$`)

// parseLFSPointer reads a pointer file: version, then the keys in order,
// oid sha256:<hex> and size among them.
func parseLFSPointer(b []byte) (lfsObject, bool) {
	var (
		obj   lfsObject
		sized bool
	)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(b) >= lfsPointerMax || len(lines) < 3 ||
		(lines[0] != "version https://git-lfs.github.com/spec/v1" && lines[0] != "version https://hawser.github.com/spec/v1") {
		return obj, false
	}
	for _, l := range lines[1:] {
		key, value, ok := strings.Cut(l, " ")
		switch {
		case !ok:
			return obj, false
		case key == "oid":
			hex, ok := strings.CutPrefix(value, "sha256:")
			if !ok || !lfsOID.MatchString(hex) {
				return obj, false
			}
			obj.OID = hex
		case key == "size":
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n < 0 {
				return obj, false
			}
			obj.Size, sized = n, true
		}
	}
	return obj, obj.OID != "" && sized
}

// lfsFiles are a tree's LFS pointers, by their blob's hash, and where
// their contents come from: a local repository's lfs/objects, or the
// downloads its LFS server's batch API answered with.
type lfsFiles struct {
	pointers  map[plumbing.Hash]lfsObject
	local     string
	downloads map[string]lfsAction
	client    *http.Client
}

// lfsAction is how the LFS server says to download an object.
type lfsAction struct {
	Href   string            `json:"href"`
	Header map[string]string `json:"header"`
}

// lfs reads which files of tree are LFS pointers (only when a
// .gitattributes of the tree names the lfs filter) and asks the
// repository's LFS server, in one batch, where their contents are.
func (c *checkout) lfs(ctx context.Context, url string, tree *object.Tree, prefix string) (*lfsFiles, error) {
	files := &lfsFiles{}
	if uses, err := usesLFS(tree); err != nil || !uses {
		return files, err
	}
	var objects []lfsObject
	files.pointers = map[plumbing.Hash]lfsObject{}
	err := tree.Files().ForEach(func(f *object.File) error {
		if f.Mode == filemode.Symlink || f.Size >= lfsPointerMax {
			return nil
		}
		text, err := f.Contents()
		if err != nil {
			return err
		}
		obj, ok := parseLFSPointer([]byte(text))
		if !ok {
			return nil
		}
		if obj.Size > oci.DefaultExtractLimits.MaxFileSize {
			return failure.New(failure.Input, fmt.Errorf("%s%s: a Git LFS file of %d bytes", prefix, f.Name, obj.Size), "keep files under 8 GiB in the repository's LFS")
		}
		if _, seen := files.pointers[f.Hash]; !seen {
			objects = append(objects, obj)
		}
		files.pointers[f.Hash] = obj
		return nil
	})
	if err != nil || len(objects) == 0 {
		return files, err
	}
	var size int64
	for _, o := range objects {
		size += o.Size
	}
	ctx, span := gitSpan(ctx, "git lfs batch", attribute.Int("git.lfs.objects", len(objects)), attribute.Int64("git.lfs.bytes", size))
	defer func() { endSpan(span, err) }()
	ep, err := gitEndpoint(url)
	if err != nil {
		return nil, err
	}
	if ep.Protocol == "file" {
		files.local, err = localLFSObjects(ep.Path)
		return files, err
	}
	endpoint, err := lfsEndpoint(tree, ep)
	if err != nil {
		return nil, err
	}
	files.client = &http.Client{Transport: lfsTransport}
	files.downloads, err = lfsBatch(ctx, files.client, endpoint, lfsAuth(endpoint, ep, c.top), objects)
	return files, err
}

// lfsAuth is what the LFS API at endpoint is sent: the credentials of the
// repository's URL, or the builder's (DIGESTLINE_GIT_USERNAME and
// _PASSWORD) for the top repository's host; nothing for another host (an
// .lfsconfig or a .gitmodules is anyone's to write).
func lfsAuth(endpoint string, repo, top *transport.Endpoint) *githttp.BasicAuth {
	u, err := neturl.Parse(endpoint)
	switch {
	case err != nil || u.Hostname() != repo.Host:
		return nil
	case repo.User != "" && repo.Password != "":
		return &githttp.BasicAuth{Username: repo.User, Password: repo.Password}
	case repo.Host != top.Host:
		return nil
	}
	user, pass := os.Getenv("DIGESTLINE_GIT_USERNAME"), os.Getenv("DIGESTLINE_GIT_PASSWORD")
	if pass == "" {
		return nil
	}
	return &githttp.BasicAuth{Username: cmp.Or(user, "git"), Password: pass}
}

// lfsTransport bounds each request's wait for an answer; the context
// bounds the whole download.
var lfsTransport = func() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = 30 * time.Second
	return t
}()

// usesLFS says whether a .gitattributes anywhere in tree sends files
// through the lfs filter.
func usesLFS(tree *object.Tree) (bool, error) {
	walker := object.NewTreeWalker(tree, true, nil)
	defer walker.Close()
	for {
		name, entry, err := walker.Next()
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if path.Base(name) != ".gitattributes" || !entry.Mode.IsFile() {
			continue
		}
		f, err := tree.TreeEntryFile(&entry)
		if err != nil {
			return false, err
		}
		text, err := f.Contents()
		if err != nil {
			return false, err
		}
		if strings.Contains(text, "filter=lfs") {
			return true, nil
		}
	}
}

// lfsEndpoint is the repository's LFS API: lfs.url of its .lfsconfig, else
// the repository's https URL with .git/info/lfs
// (https://github.com/git-lfs/git-lfs/blob/main/docs/api/server-discovery.md).
func lfsEndpoint(tree *object.Tree, ep *transport.Endpoint) (string, error) {
	if f, err := tree.File(".lfsconfig"); err == nil {
		text, err := f.Contents()
		if err != nil {
			return "", err
		}
		cfg := format.New()
		if err := format.NewDecoder(strings.NewReader(text)).Decode(cfg); err != nil {
			return "", failure.New(failure.Input, fmt.Errorf(".lfsconfig: %w", err), "fix the repository's .lfsconfig")
		}
		if url := cfg.Section("lfs").Option("url"); url != "" {
			return strings.TrimSuffix(url, "/"), nil
		}
	}
	p := "/" + strings.Trim(ep.Path, "/")
	if !strings.HasSuffix(p, ".git") {
		p += ".git"
	}
	if ep.Protocol == "http" || ep.Protocol == "https" {
		return ep.Protocol + "://" + hostPort(ep) + p + "/info/lfs", nil
	}
	return "https://" + hostPort(&transport.Endpoint{Host: ep.Host}) + p + "/info/lfs", nil // ssh's LFS is its host's https
}

// localLFSObjects is where git lfs keeps a local repository's objects:
// lfs/objects of a bare one, .git/lfs/objects of one with a work tree.
func localLFSObjects(repo string) (string, error) {
	for _, dir := range []string{filepath.Join(repo, "lfs", "objects"), filepath.Join(repo, ".git", "lfs", "objects")} {
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return dir, nil
		}
	}
	return "", failure.New(failure.NotFound, fmt.Errorf("%s has Git LFS files and no lfs/objects", repo), "push the LFS files to the repository: git lfs push --all origin")
}

// lfsBatch asks the LFS server where to download objects
// (https://github.com/git-lfs/git-lfs/blob/main/docs/api/batch.md), a
// hundred at a time, and returns each one's download.
func lfsBatch(ctx context.Context, client *http.Client, endpoint string, auth *githttp.BasicAuth, objects []lfsObject) (map[string]lfsAction, error) {
	downloads := make(map[string]lfsAction, len(objects))
	for len(objects) > 0 {
		batch := objects[:min(len(objects), 100)]
		objects = objects[len(batch):]
		body, err := json.Marshal(map[string]any{"operation": "download", "transfers": []string{"basic"}, "objects": batch, "hash_algo": "sha256"})
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint+"/objects/batch", bytes.NewReader(body))
		if err != nil {
			return nil, failure.New(failure.Input, fmt.Errorf("Git LFS endpoint %q: %w", redactGitURL(endpoint), err), "fix lfs.url in the repository's .lfsconfig")
		}
		req.Header.Set("Accept", "application/vnd.git-lfs+json")
		req.Header.Set("Content-Type", "application/vnd.git-lfs+json")
		if auth != nil {
			req.SetBasicAuth(auth.Username, auth.Password)
		}
		var answer struct {
			Transfer string `json:"transfer"`
			Objects  []struct {
				lfsObject
				Actions struct {
					Download *lfsAction `json:"download"`
				} `json:"actions"`
				Error *struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			} `json:"objects"`
		}
		if err := lfsDo(client, req, &answer); err != nil {
			return nil, err
		}
		if answer.Transfer != "" && answer.Transfer != "basic" {
			return nil, failure.New(failure.Schema, fmt.Errorf("Git LFS server %s answered with transfer %q", redactGitURL(endpoint), answer.Transfer), "the builder downloads with the basic transfer, which every LFS server offers")
		}
		for _, o := range answer.Objects {
			switch {
			case o.Error != nil:
				return nil, failure.New(failure.NotFound, fmt.Errorf("Git LFS object %s: the server answered %d %s", o.OID, o.Error.Code, o.Error.Message),
					"push the repository's LFS files: git lfs push --all origin")
			case o.Actions.Download != nil:
				downloads[o.OID] = *o.Actions.Download
			}
		}
	}
	return downloads, nil
}

// lfsDo sends a batch request and reads its JSON answer, classifying a
// refusal.
func lfsDo(client *http.Client, req *http.Request, answer any) error {
	shown := redactGitURL(req.URL.String())
	resp, err := client.Do(req)
	if err != nil {
		return failure.New(failure.Transport, fmt.Errorf("Git LFS batch %s: %w", shown, withoutURL(err)), "check that the builder can reach the repository's LFS server")
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden:
		return failure.New(failure.Auth, fmt.Errorf("Git LFS batch %s: %s", shown, resp.Status),
			"the repository's LFS needs credentials the builder lacks: set DIGESTLINE_GIT_USERNAME and DIGESTLINE_GIT_PASSWORD (a token with read access) where the builder runs")
	case resp.StatusCode == http.StatusNotFound:
		return failure.New(failure.NotFound, fmt.Errorf("Git LFS batch %s: %s", shown, resp.Status), "the repository has no LFS server there: name it in .lfsconfig (lfs.url)")
	case resp.StatusCode == http.StatusTooManyRequests:
		return failure.New(failure.RateLimit, fmt.Errorf("Git LFS batch %s: %s", shown, resp.Status), "the LFS server limits requests: build again later")
	case resp.StatusCode != http.StatusOK:
		return failure.New(failure.Transport, fmt.Errorf("Git LFS batch %s: %s", shown, resp.Status), "the repository's LFS server refused: check its status")
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(answer); err != nil {
		return failure.New(failure.Schema, fmt.Errorf("Git LFS batch %s: %w", shown, err), "the LFS server's answer is not the batch API's JSON")
	}
	return nil
}

// write writes the LFS file obj in place of its pointer, proving its
// size and sha256 as it goes.
func (l *lfsFiles) write(ctx context.Context, tw *tar.Writer, hdr *tar.Header, mode filemode.FileMode, obj lfsObject) error {
	r, err := l.open(ctx, obj)
	if err != nil {
		return err
	}
	defer r.Close()
	hdr.Typeflag, hdr.Size, hdr.Mode = tar.TypeReg, obj.Size, 0o644
	if mode == filemode.Executable {
		hdr.Mode = 0o755
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(tw, io.TeeReader(io.LimitReader(bufio.NewReader(r), obj.Size), h))
	if err != nil {
		return err
	}
	if sum := hex.EncodeToString(h.Sum(nil)); n != obj.Size || sum != obj.OID {
		return failure.New(failure.Integrity, fmt.Errorf("Git LFS object %s: got %d bytes with sha256 %s, want %d", obj.OID, n, sum, obj.Size),
			"the LFS server holds other bytes than the pointer names: push the file again (git lfs push --all origin)")
	}
	return nil
}

// open reads obj's bytes from the local repository or its download.
func (l *lfsFiles) open(ctx context.Context, obj lfsObject) (io.ReadCloser, error) {
	if l.local != "" {
		f, err := os.Open(filepath.Join(l.local, obj.OID[:2], obj.OID[2:4], obj.OID))
		if err != nil {
			return nil, failure.New(failure.NotFound, fmt.Errorf("Git LFS object %s: %w", obj.OID, err), "push the LFS files to the repository: git lfs push --all origin")
		}
		return f, nil
	}
	action, ok := l.downloads[obj.OID]
	if !ok {
		return nil, failure.New(failure.NotFound, fmt.Errorf("Git LFS object %s: the server named no download", obj.OID), "push the repository's LFS files: git lfs push --all origin")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, action.Href, nil)
	if err != nil {
		return nil, failure.New(failure.Schema, fmt.Errorf("Git LFS object %s: download %w", obj.OID, err), "the LFS server's answer is not the batch API's JSON")
	}
	// Only the headers the server gave for it: the href may be another
	// host's (a bucket's), which gets none of the builder's credentials.
	for k, v := range action.Header {
		req.Header.Set(k, v)
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return nil, failure.New(failure.Transport, fmt.Errorf("Git LFS object %s: %w", obj.OID, withoutURL(err)), "check that the builder can reach the repository's LFS storage")
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		class := failure.Transport
		switch resp.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			class = failure.Auth
		case http.StatusNotFound:
			class = failure.NotFound
		case http.StatusTooManyRequests:
			class = failure.RateLimit
		}
		return nil, failure.New(class, fmt.Errorf("Git LFS object %s: download %s", obj.OID, resp.Status), "the LFS storage refused the download: build again, or check the repository's LFS")
	}
	return resp.Body, nil
}

// withoutURL is a request's error without the URL it names: a download's
// href is often signed (a bucket's presigned URL), and an error reaches the
// run's events and the logs.
func withoutURL(err error) error {
	var ue *neturl.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}
