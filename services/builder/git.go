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

	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/go-git/go-git/v5"
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

// gitCheckout writes a clean tree of url at rev into dir (no .git, nothing
// untracked) and returns the full commit id. The repository is cloned with
// go-git, so the builder needs no git installed (its image has none); only
// file:// URLs run git's upload-pack. The tree is streamed as a tarball
// through the same safe extraction as any untrusted tarball.
func gitCheckout(ctx context.Context, url, rev, dir string) (string, error) {
	if url == "" || strings.HasPrefix(url, "-") {
		return "", failure.New(failure.Input, fmt.Errorf("git url %q", url), "source.url must be a git URL")
	}
	if !gitRevPattern.MatchString(rev) {
		return "", failure.New(failure.Input, fmt.Errorf("git revision %q", rev), "source.rev must be a commit id, branch or tag")
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
	shown := redactGitURL(url)
	repo, err := git.PlainCloneContext(ctx, bare, true, &git.CloneOptions{URL: url, Tags: git.AllTags, Auth: gitAuth(ep)})
	if errors.Is(err, transport.ErrAuthenticationRequired) || errors.Is(err, transport.ErrAuthorizationFailed) {
		return "", failure.New(failure.Auth, fmt.Errorf("git clone %s: %w", shown, err), "the repository needs credentials the builder lacks: set DIGESTLINE_GIT_USERNAME and DIGESTLINE_GIT_PASSWORD (a token with read access) where the builder runs")
	}
	if ctx.Err() != nil { // the handler's deadline, or the shutdown: not the repository's fault
		return "", fmt.Errorf("git clone %s: %w (%w)", shown, err, context.Cause(ctx))
	}
	if err != nil {
		return "", failure.New(failure.NotFound, fmt.Errorf("git clone %s: %w", shown, err), "check source.url and that the builder can reach it")
	}
	hash, err := repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return "", failure.New(failure.NotFound, fmt.Errorf("git revision %q not found in %s: %w", rev, shown, err), "check that the revision exists in the repository")
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
