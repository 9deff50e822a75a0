package builder

import (
	"archive/tar"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

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
// revision into dir (no .git, nothing untracked) and returns the full
// commit id. It fetches what the source names and nothing that depends on
// the remote's HEAD: with a ref (the one a webhook's push moved), that ref
// alone, and the revision must be on it; without one, every branch and
// tag. The repository is fetched with go-git, so the builder needs no git
// installed (its image has none); only file:// URLs run git's
// upload-pack. The tree is streamed as a tarball through the same safe
// extraction as any untrusted tarball.
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
	ep, err := transport.NewEndpoint(url)
	if err != nil || gitRemoteHelper.MatchString(url) || !slices.Contains(gitProtocols, ep.Protocol) {
		return "", failure.New(failure.Input, fmt.Errorf("git url %q: transport not allowed", url), "source.url must be an https, http, ssh, git or file URL")
	}
	bare, err := os.MkdirTemp("", "digestline-git-*")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(bare)
	repo, err := gitFetch(ctx, bare, url, ref, ep)
	if err != nil {
		return "", err
	}
	shown := redactGitURL(url)
	hash, err := repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		if ref != "" {
			return "", failure.New(failure.NotFound, fmt.Errorf("git revision %q is not on %s of %s: %w", rev, ref, shown, err),
				"the commit is no longer on the pushed ref (force-pushed away?): push again to build the ref's new head")
		}
		return "", failure.New(failure.NotFound, fmt.Errorf("git revision %q not found in %s: %w", rev, shown, err), "check that the revision exists in the repository")
	}
	if tag, err := repo.TagObject(*hash); err == nil { // an annotated tag's own id: its commit
		*hash = tag.Target
	}
	commit, err := repo.CommitObject(*hash)
	if err != nil {
		return "", failure.New(failure.NotFound, fmt.Errorf("git revision %q of %s: %w", rev, shown, err), "source.rev must name a commit")
	}
	tree, err := commit.Tree()
	if err != nil {
		return "", fmt.Errorf("git tree of %s: %w", commit.Hash, err)
	}

	// The tree goes to the extractor as a tarball, as git archive writes it:
	// the writer's goroutine ends when the extractor stops reading.
	pr, pw := io.Pipe()
	written := make(chan error, 1)
	go func() {
		err := archiveTree(repo, tree, commit, pw)
		pw.CloseWithError(err)
		written <- err
	}()
	extractErr := oci.ExtractTar(pr, dir, oci.DefaultExtractLimits)
	pr.CloseWithError(errors.New("extraction stopped"))
	if err := <-written; err != nil && extractErr == nil {
		extractErr = fmt.Errorf("git tree of %s: %w", commit.Hash, err)
	}
	if extractErr != nil {
		return "", failure.New(failure.Input, extractErr, "the repository's tree cannot be unpacked safely")
	}
	return commit.Hash.String(), nil
}

// gitFetch fetches ref (every branch and tag when ref is empty) of url
// into a new bare repository at dir.
func gitFetch(ctx context.Context, dir, url, ref string, ep *transport.Endpoint) (*git.Repository, error) {
	repo, err := git.PlainInit(dir, true)
	if err != nil {
		return nil, fmt.Errorf("git init: %w", err)
	}
	remote, err := repo.CreateRemote(&gitconfig.RemoteConfig{Name: "origin", URLs: []string{url}})
	if err != nil {
		return nil, fmt.Errorf("git remote: %w", err)
	}
	specs, tags := []gitconfig.RefSpec{"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"}, git.AllTags
	if ref != "" {
		specs, tags = []gitconfig.RefSpec{gitconfig.RefSpec("+" + ref + ":" + ref)}, git.NoTags
	}
	err = remote.FetchContext(ctx, &git.FetchOptions{RefSpecs: specs, Tags: tags, Auth: gitAuth(ep)})
	shown := redactGitURL(url)
	switch {
	case err == nil, errors.Is(err, git.NoErrAlreadyUpToDate):
		return repo, nil
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed):
		return nil, failure.New(failure.Auth, fmt.Errorf("git fetch %s: %w", shown, err), "the repository needs credentials the builder lacks: set DIGESTLINE_GIT_USERNAME and DIGESTLINE_GIT_PASSWORD (a token with read access) where the builder runs")
	case ctx.Err() != nil: // the handler's deadline, or the shutdown: not the repository's fault
		return nil, fmt.Errorf("git fetch %s: %w (%w)", shown, err, context.Cause(ctx))
	case ref != "" && (errors.As(err, new(git.NoMatchingRefSpecError)) || errors.Is(err, transport.ErrEmptyRemoteRepository)):
		return nil, failure.New(failure.NotFound, fmt.Errorf("git fetch %s of %s: %w", ref, shown, err), "the ref was deleted or renamed since the push: push it again")
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

// archiveTree writes tree as a tar stream: directories, regular and
// executable files and symlinks, every time set to the commit's; submodules
// are left out, as git archive leaves their contents out.
func archiveTree(repo *git.Repository, tree *object.Tree, commit *object.Commit, w io.Writer) error {
	tw := tar.NewWriter(w)
	mtime := commit.Committer.When
	walker := object.NewTreeWalker(tree, true, nil)
	defer walker.Close()
	for {
		name, entry, err := walker.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: name, ModTime: mtime, Format: tar.FormatPAX}
		switch entry.Mode {
		case filemode.Dir:
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, name+"/", 0o755
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			continue
		case filemode.Submodule:
			continue
		}
		blob, err := repo.BlobObject(entry.Hash)
		if err != nil {
			return fmt.Errorf("%s: blob %s: %w", name, entry.Hash, err)
		}
		if err := writeBlob(tw, hdr, entry.Mode, blob); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return tw.Close()
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
