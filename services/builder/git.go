package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"

	"github.com/digestline/digestline/pkg/oci"
)

// gitRevPattern is what a revision may look like: a commit id, branch or tag
// name. It never starts with "-", so it cannot be read as an option.
var gitRevPattern = regexp.MustCompile(`^[A-Za-z0-9_.][A-Za-z0-9_./-]{0,254}$`)

// gitProtocols are the transports a source URL may use; git's ext:: and
// fd:: transports run commands and are refused.
const gitProtocols = "file:git:http:https:ssh"

// gitCheckout writes a clean tree of url at rev into dir (no .git, nothing
// untracked) and returns the full commit id. The tree comes from git archive
// and goes through the same safe extraction as any untrusted tarball.
func gitCheckout(ctx context.Context, url, rev, dir string) (string, error) {
	if url == "" || strings.HasPrefix(url, "-") {
		return "", &BuildError{ClassInput, "source.url must be a git URL", fmt.Errorf("git url %q", url)}
	}
	if !gitRevPattern.MatchString(rev) {
		return "", &BuildError{ClassInput, "source.rev must be a commit id, branch or tag", fmt.Errorf("git revision %q", rev)}
	}
	if _, err := exec.LookPath("git"); err != nil {
		return "", errors.New("git is not installed where the builder runs")
	}
	bare, err := os.MkdirTemp("", "digestline-git-*")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(bare)
	git := func(args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Env = append(os.Environ(), "GIT_ALLOW_PROTOCOL="+gitProtocols, "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1")
		return cmd
	}
	if out, err := git("clone", "--quiet", "--bare", "--", url, bare).CombinedOutput(); err != nil {
		return "", &BuildError{ClassNotFound, "check source.url and that the builder can reach it", fmt.Errorf("git clone %s: %v: %s", url, err, strings.TrimSpace(string(out)))}
	}
	out, err := git("-C", bare, "rev-parse", "--verify", "--quiet", rev+"^{commit}").Output()
	if err != nil {
		return "", &BuildError{ClassNotFound, "check that the revision exists in the repository", fmt.Errorf("git revision %q not found in %s", rev, url)}
	}
	commit := strings.TrimSpace(string(out))
	archive := git("-C", bare, "archive", "--format=tar", commit)
	stdout, err := archive.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := archive.Start(); err != nil {
		return "", err
	}
	extractErr := oci.ExtractTar(stdout, dir, oci.DefaultExtractLimits)
	_, _ = io.Copy(io.Discard, stdout)
	if err := archive.Wait(); err != nil && extractErr == nil {
		extractErr = fmt.Errorf("git archive %s: %w", commit, err)
	}
	if extractErr != nil {
		return "", &BuildError{ClassInput, "the repository's tree cannot be unpacked safely", extractErr}
	}
	return commit, nil
}
