package builder

import (
	"archive/tar"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// gitRevPattern is what a revision may look like: a commit id, branch or tag
// name. It never starts with "-", so it cannot be read as an option.
var gitRevPattern = regexp.MustCompile(`^[A-Za-z0-9_.][A-Za-z0-9_./-]{0,254}$`)

// gitProtocols are the transports a source URL may use (scp-like
// user@host:path is ssh); anything else — git's ext:: and fd::, which run
// commands — is refused before anything is fetched.
var gitProtocols = []string{"https", "http", "ssh", "git", "file"}

// gitRemoteHelper is git's <transport>::<address> form (ext::, fd::), which
// go-git would otherwise take for an scp-like ssh address.
var gitRemoteHelper = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*::`)

// gitCheckout writes a clean tree of the source's repository at its
// revision into dir (no .git, nothing untracked), with its submodules at
// their commits and its Git LFS files' contents (gitlfs.go), and returns
// the full commit id. It fetches what the source names and nothing that
// depends on the remote's HEAD: with a ref (the one a webhook's push
// moved), that ref alone, and the revision must be on it; without one,
// every branch and tag. The repository is fetched with go-git, so the
// builder needs no git installed (its image has none); only file:// URLs
// run git's upload-pack. The tree is streamed as a tarball through the same
// safe extraction as any untrusted tarball.
func gitCheckout(ctx context.Context, src events.Source, dir string) (string, error) {
	url, rev, ref := src.URL, cmp.Or(src.Rev, src.Ref), src.Ref
	if url == "" || strings.HasPrefix(url, "-") {
		return "", failure.New(failure.Input, fmt.Errorf("git url %q", url), "source.url must be a git URL")
	}
	if !gitRevPattern.MatchString(rev) {
		return "", failure.New(failure.Input, fmt.Errorf("git revision %q", rev), "source.rev must be a commit id, branch or tag")
	}
	if ref != "" && (!strings.HasPrefix(ref, "refs/") || !gitRevPattern.MatchString(ref) || strings.Contains(ref, "..")) {
		return "", failure.New(failure.Input, fmt.Errorf("git ref %q", ref), "source.ref must be a full ref name, e.g. refs/heads/main or refs/tags/v1.0.0")
	}
	ep, err := gitEndpoint(url)
	if err != nil {
		return "", failure.New(failure.Input, err, "source.url must be an https, http, ssh, git or file URL")
	}
	tmp, err := os.MkdirTemp("", "digestline-git-*")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	repo, commit, err := fetchCommit(ctx, tmp, url, rev, ref, gitAuth(ep))
	if err != nil {
		return "", err
	}

	// The tree goes to the extractor as a tarball, as git archive writes it:
	// the writer's goroutine ends when the extractor stops reading.
	co := &checkout{tmp: tmp, mtime: commit.Committer.When, top: ep}
	pr, pw := io.Pipe()
	written := make(chan error, 1)
	go func() {
		tw := tar.NewWriter(pw)
		err := co.tree(ctx, tw, repo, url, commit, "", 0)
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
		written <- err
	}()
	extractErr := oci.ExtractTar(pr, dir, oci.DefaultExtractLimits)
	pr.CloseWithError(errExtractionStopped)
	switch err := <-written; {
	case err != nil && !errors.Is(err, errExtractionStopped):
		if errors.As(err, new(*failure.Error)) {
			return "", err
		}
		return "", fmt.Errorf("git tree of %s: %w", commit.Hash, err)
	case extractErr != nil:
		return "", failure.New(failure.Input, extractErr, "the repository's tree cannot be unpacked safely")
	}
	return commit.Hash.String(), nil
}

// gitSpan starts a span of the checkout under the build's (the handler's)
// span: a fetch, a submodule, the LFS files, each with how long it took in
// the run's trace.
func gitSpan(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return trace.SpanFromContext(ctx).TracerProvider().Tracer("digestline/builder").Start(ctx, name, trace.WithAttributes(attrs...))
}

// endSpan ends span with err's status.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// errExtractionStopped is what the tree's writer meets when the extractor
// refused the tarball (its own error says why).
var errExtractionStopped = errors.New("extraction stopped")

// gitEndpoint parses a repository's URL, refusing the transports that run
// commands.
func gitEndpoint(url string) (*transport.Endpoint, error) {
	ep, err := transport.NewEndpoint(url)
	if err != nil || gitRemoteHelper.MatchString(url) || !slices.Contains(gitProtocols, ep.Protocol) {
		return nil, fmt.Errorf("git url %q: transport not allowed", redactGitURL(url))
	}
	return ep, nil
}

// fetchCommit fetches rev into a new bare repository under tmp and returns
// the repository and the commit. With a ref, it fetches the ref's tip alone
// first (depth 1): that is the pushed commit unless the ref moved since,
// and a repository's history is often far larger than its tree. When the
// ref moved, the commits of its last refDepth (a busy branch's pushes
// while the build waited; whatever they hold is on the ref); only then its
// whole history. Without a ref, every branch and tag.
func fetchCommit(ctx context.Context, tmp, url, rev, ref string, auth transport.AuthMethod) (*git.Repository, *object.Commit, error) {
	if ref != "" {
		for _, depth := range []int{1, refDepth} {
			repo, err := gitFetch(ctx, filepath.Join(tmp, fmt.Sprint("depth-", depth)), url, ref, depth, auth)
			if err != nil {
				return nil, nil, err
			}
			if commit, err := commitOf(repo, rev); err == nil {
				return repo, commit, nil
			}
		}
	}
	repo, err := gitFetch(ctx, filepath.Join(tmp, "all"), url, ref, 0, auth)
	if err != nil {
		return nil, nil, err
	}
	commit, err := commitOf(repo, rev)
	shown := redactGitURL(url)
	switch {
	case err == nil:
		return repo, commit, nil
	case ref != "":
		return nil, nil, failure.New(failure.NotFound, fmt.Errorf("git revision %q is not on %s of %s: %w", rev, ref, shown, err),
			"the commit is no longer on the pushed ref (force-pushed away?): push again to build the ref's new head")
	default:
		return nil, nil, failure.New(failure.NotFound, fmt.Errorf("git revision %q not found in %s: %w", rev, shown, err), "check that the revision exists in the repository")
	}
}

// refDepth is how far back a ref that moved since its push is fetched
// before all of its history is.
const refDepth = 64

// commitOf is the commit rev names in repo: a commit id (or a prefix of
// one), a branch, a tag, or an annotated tag's own id.
func commitOf(repo *git.Repository, rev string) (*object.Commit, error) {
	hash, err := repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return nil, err
	}
	if tag, err := repo.TagObject(*hash); err == nil {
		*hash = tag.Target
	}
	commit, err := repo.CommitObject(*hash)
	if err != nil {
		return nil, fmt.Errorf("%s is not a commit: %w", rev, err)
	}
	return commit, nil
}

// gitFetch fetches want of url into a new bare repository at dir: a ref,
// a commit id (which the server may refuse: git.ErrExactSHA1NotSupported),
// or every branch and tag when want is empty; depth > 0 fetches only that
// many commits of its history.
func gitFetch(ctx context.Context, dir, url, want string, depth int, auth transport.AuthMethod) (repo *git.Repository, err error) {
	ctx, span := gitSpan(ctx, "git fetch", attribute.String("git.url", redactGitURL(url)), attribute.String("git.want", cmp.Or(want, "every branch and tag")),
		attribute.Int("git.depth", depth))
	defer func() { endSpan(span, err) }()
	repo, err = git.PlainInit(dir, true)
	if err != nil {
		return nil, fmt.Errorf("git init: %w", err)
	}
	remote, err := repo.CreateRemote(&gitconfig.RemoteConfig{Name: "origin", URLs: []string{url}})
	if err != nil {
		return nil, fmt.Errorf("git remote: %w", err)
	}
	specs, tags := []gitconfig.RefSpec{"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"}, git.AllTags
	switch {
	case plumbing.IsHash(want):
		specs, tags = []gitconfig.RefSpec{gitconfig.RefSpec(want + ":refs/digestline/commit")}, git.NoTags
	case want != "":
		specs, tags = []gitconfig.RefSpec{gitconfig.RefSpec("+" + want + ":" + want)}, git.NoTags
	}
	err = remote.FetchContext(ctx, &git.FetchOptions{RefSpecs: specs, Tags: tags, Depth: depth, Auth: auth})
	shown := redactGitURL(url)
	switch {
	case err == nil, errors.Is(err, git.NoErrAlreadyUpToDate):
		return repo, nil
	case errors.Is(err, git.ErrExactSHA1NotSupported):
		return nil, err
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed):
		return nil, failure.New(failure.Auth, fmt.Errorf("git fetch %s: %w", shown, err), "the repository needs credentials the builder lacks: set DIGESTLINE_GIT_USERNAME and DIGESTLINE_GIT_PASSWORD (a token with read access) where the builder runs")
	case ctx.Err() != nil: // the handler's deadline, or the shutdown: not the repository's fault
		return nil, fmt.Errorf("git fetch %s: %w (%w)", shown, err, context.Cause(ctx))
	case want != "" && (errors.As(err, new(git.NoMatchingRefSpecError)) || errors.Is(err, transport.ErrEmptyRemoteRepository)):
		return nil, failure.New(failure.NotFound, fmt.Errorf("git fetch %s of %s: %w", want, shown, err), "the ref was deleted or renamed since the push: push it again")
	case errors.Is(err, transport.ErrRepositoryNotFound), errors.Is(err, transport.ErrEmptyRemoteRepository):
		return nil, failure.New(failure.NotFound, fmt.Errorf("git fetch %s: %w", shown, err), "check source.url and that the builder can reach it")
	default:
		return nil, failure.New(failure.Transport, fmt.Errorf("git fetch %s: %w", shown, err), "check source.url and that the builder can reach the forge")
	}
}

// gitAuth is HTTP basic auth from DIGESTLINE_GIT_USERNAME and
// DIGESTLINE_GIT_PASSWORD (a token, for most forges), for http(s) URLs that
// carry no credentials of their own; nil otherwise (ssh uses the agent).
func gitAuth(ep *transport.Endpoint) transport.AuthMethod {
	user, pass := os.Getenv("DIGESTLINE_GIT_USERNAME"), os.Getenv("DIGESTLINE_GIT_PASSWORD")
	if pass == "" || ep.User != "" || (ep.Protocol != "https" && ep.Protocol != "http") {
		return nil
	}
	return &githttp.BasicAuth{Username: cmp.Or(user, "git"), Password: pass}
}

// noCredentialIn refuses a repository URL that carries a credential (a
// password, or the user name forges take tokens as): the URL is stored in
// build.requested, which is no place for a secret.
func noCredentialIn(url string) error {
	if redactGitURL(url) == url {
		return nil
	}
	return fmt.Errorf("%s carries a credential, which would be stored in each build.requested event: give the builder DIGESTLINE_GIT_USERNAME and DIGESTLINE_GIT_PASSWORD instead", redactGitURL(url))
}

// redactGitURL is url as it may be shown in errors, logs and annotations:
// without a password, and without the user of an http(s) URL (where forges
// take tokens as user names).
func redactGitURL(url string) string {
	ep, err := transport.NewEndpoint(url)
	if err != nil || (ep.Password == "" && (ep.User == "" || (ep.Protocol != "https" && ep.Protocol != "http"))) {
		return url
	}
	ep.User, ep.Password = "", ""
	return ep.String()
}

// checkout writes a commit's tree into a tarball, as git archive does,
// with each submodule's tree at its commit in its place and each Git LFS
// file's content in place of its pointer.
type checkout struct {
	tmp   string    // where submodules' repositories are fetched
	mtime time.Time // every entry's: the top commit's time
	top   *transport.Endpoint
	subs  int // submodule repositories fetched so far, to name their directories
}

// maxSubmoduleDepth bounds submodules within submodules, as git's own
// recursion does.
const maxSubmoduleDepth = 8

// tree writes commit's tree of repo (fetched from url) under prefix:
// directories, regular and executable files and symlinks, every time set
// to the top commit's.
func (c *checkout) tree(ctx context.Context, tw *tar.Writer, repo *git.Repository, url string, commit *object.Commit, prefix string, depth int) error {
	tree, err := commit.Tree()
	if err != nil {
		return fmt.Errorf("git tree of %s: %w", commit.Hash, err)
	}
	lfs, err := c.lfs(ctx, url, tree, prefix)
	if err != nil {
		return err
	}
	walker := object.NewTreeWalker(tree, true, nil)
	defer walker.Close()
	for {
		name, entry, err := walker.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: prefix + name, ModTime: c.mtime, Format: tar.FormatPAX}
		switch entry.Mode {
		case filemode.Dir:
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, hdr.Name+"/", 0o755
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			continue
		case filemode.Submodule:
			if err := c.submodule(ctx, tw, tree, url, name, entry.Hash, prefix, depth); err != nil {
				return err
			}
			continue
		}
		blob, err := repo.BlobObject(entry.Hash)
		if err != nil {
			return fmt.Errorf("%s: blob %s: %w", hdr.Name, entry.Hash, err)
		}
		if obj, ok := lfs.pointers[entry.Hash]; ok && entry.Mode != filemode.Symlink {
			err = lfs.write(ctx, tw, hdr, entry.Mode, obj)
		} else {
			err = writeBlob(tw, hdr, entry.Mode, blob)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
	}
}

// submodule writes the submodule at path of tree (the gitlink to commit
// hash) from the repository .gitmodules names for it, fetched as git
// submodule update would: only that commit where the server allows it,
// else every branch and tag.
func (c *checkout) submodule(ctx context.Context, tw *tar.Writer, tree *object.Tree, parentURL, path string, hash plumbing.Hash, prefix string, depth int) (err error) {
	shown := prefix + path
	ctx, span := gitSpan(ctx, "git submodule "+shown, attribute.String("git.commit", hash.String()))
	defer func() { endSpan(span, err) }()
	if depth >= maxSubmoduleDepth {
		return failure.New(failure.Input, fmt.Errorf("submodule %s: submodules nested more than %d deep", shown, maxSubmoduleDepth), "flatten the repository's submodules")
	}
	m, err := submoduleAt(tree, path)
	if err != nil {
		return failure.New(failure.Input, fmt.Errorf("submodule %s: %w", shown, err),
			"name the submodule's URL in .gitmodules (git submodule add URL PATH), or remove the gitlink (git rm --cached PATH)")
	}
	url := submoduleURL(parentURL, m.URL)
	ep, err := gitEndpoint(url)
	if err == nil && ep.Protocol == "file" && c.top.Protocol != "file" {
		err = fmt.Errorf("git url %q: a local repository, from a repository that is not", url)
	}
	if err != nil {
		return failure.New(failure.Input, fmt.Errorf("submodule %s: %w", shown, err),
			"a submodule's URL must be https, http, ssh or git (file only within a local repository), as git's protocol.file.allow=user has it")
	}
	if sameHostOverHTTP(ep, c.top) {
		url = fmt.Sprintf("%s://%s/%s", c.top.Protocol, hostPort(c.top), strings.TrimPrefix(ep.Path, "/"))
		ep, _ = gitEndpoint(url)
	}
	// The builder's credentials go to the repository's own host only: a
	// .gitmodules is anyone's to write.
	var auth transport.AuthMethod
	if ep.Host == c.top.Host && ep.Port == c.top.Port {
		auth = gitAuth(ep)
	}
	c.subs++
	dir := filepath.Join(c.tmp, fmt.Sprintf("submodule-%d", c.subs))
	repo, err := gitFetch(ctx, dir, url, hash.String(), 1, auth)
	if err != nil && !errors.As(err, new(*failure.Error)) { // the server fetches no commit by its id: all of it
		repo, err = gitFetch(ctx, dir+"-all", url, "", 0, auth)
	}
	if err != nil {
		return fmt.Errorf("submodule %s: %w", shown, err)
	}
	commit, err := repo.CommitObject(hash)
	if err != nil {
		return failure.New(failure.NotFound, fmt.Errorf("submodule %s: commit %s is not in %s: %w", shown, hash, redactGitURL(url), err),
			"push the submodule's commit to its repository, or point the submodule at a commit there (git submodule update --remote)")
	}
	hdr := &tar.Header{Name: shown + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: c.mtime, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	return c.tree(ctx, tw, repo, url, commit, shown+"/", depth+1)
}

// sameHostOverHTTP says whether a submodule's ssh (or git://) URL names
// the host the repository itself was fetched from over HTTP(S): the
// submodule is fetched over HTTP(S) from there too, with the same
// credentials, as CI checkouts rewrite it (git@github.com:org/lib.git is
// https://github.com/org/lib.git). The builder holds no ssh key.
func sameHostOverHTTP(ep, top *transport.Endpoint) bool {
	return (ep.Protocol == "ssh" || ep.Protocol == "git") && (top.Protocol == "https" || top.Protocol == "http") && ep.Host == top.Host
}

// hostPort is an endpoint's host, with its port when it names one.
func hostPort(ep *transport.Endpoint) string {
	host := strings.Trim(ep.Host, "[]") // an IPv6 address, with or without its brackets
	switch {
	case ep.Port != 0:
		return net.JoinHostPort(host, strconv.Itoa(ep.Port))
	case strings.Contains(host, ":"):
		return "[" + host + "]"
	}
	return host
}

// submoduleAt is the .gitmodules entry of the submodule at path.
func submoduleAt(tree *object.Tree, path string) (*gitconfig.Submodule, error) {
	f, err := tree.File(".gitmodules")
	if err != nil {
		return nil, fmt.Errorf("a gitlink that .gitmodules does not name: %w", err)
	}
	text, err := f.Contents()
	if err != nil {
		return nil, fmt.Errorf(".gitmodules: %w", err)
	}
	mods := gitconfig.NewModules()
	if err := mods.Unmarshal([]byte(text)); err != nil {
		return nil, fmt.Errorf(".gitmodules: %w", err)
	}
	for _, m := range mods.Submodules {
		if m.Path == path {
			if err := m.Validate(); err != nil {
				return nil, fmt.Errorf(".gitmodules: %w", err)
			}
			return m, nil
		}
	}
	return nil, errors.New("a gitlink that .gitmodules does not name")
}

// submoduleURL is a submodule's URL as git resolves it: ./x and ../x are
// relative to the repository's own URL (../lib.git beside
// https://host/org/app.git is https://host/org/lib.git, and beside
// git@host:org/app.git is git@host:org/lib.git).
func submoduleURL(parent, url string) string {
	if !strings.HasPrefix(url, "./") && !strings.HasPrefix(url, "../") {
		return url
	}
	base, sep := strings.TrimSuffix(parent, "/"), "/"
	for {
		switch {
		case strings.HasPrefix(url, "./"):
			url = url[2:]
		case strings.HasPrefix(url, "../"):
			url = url[3:]
			host := -1 // never into a URL's scheme or host
			if i := strings.Index(base, "://"); i >= 0 {
				host = i + 3
			}
			if i := strings.LastIndexAny(base, "/:"); i > host {
				base, sep = base[:i], base[i:i+1]
			}
		default:
			return base + sep + url
		}
	}
}

func writeBlob(tw *tar.Writer, hdr *tar.Header, mode filemode.FileMode, blob *object.Blob) error {
	r, err := blob.Reader()
	if err != nil {
		return err
	}
	defer r.Close()
	switch mode {
	case filemode.Symlink:
		target, err := io.ReadAll(io.LimitReader(r, 4096))
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, string(target), 0o777
		return tw.WriteHeader(hdr)
	case filemode.Executable:
		hdr.Mode = 0o755
	default:
		hdr.Mode = 0o644
	}
	hdr.Typeflag, hdr.Size = tar.TypeReg, blob.Size
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err = io.Copy(tw, r)
	return err
}
