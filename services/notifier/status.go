package notifier

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/digestline/digestline/pkg/bus"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/nats-io/nats.go/jetstream"
)

// Commit statuses: a rule in a forge's status format reports each run a
// push started on the pushed commit, as CI does: pending while it runs,
// success once it is promoted (or superseded: nothing failed), failure
// when a step fails or a gate refuses, with the run's page as its link.

// The forges' commit status APIs, as formats of a rule whose URL is the
// forge's API.
const (
	FormatGitHubStatus          = "github-status"           // GitHub, GitHub Enterprise: POST {api}/repos/{owner}/{repo}/statuses/{sha}
	FormatGiteaStatus           = "gitea-status"            // Gitea, Forgejo: the same, under {host}/api/v1
	FormatGitLabStatus          = "gitlab-status"           // GitLab: POST {api}/projects/{path}/statuses/{sha}
	FormatBitbucketStatus       = "bitbucket-status"        // Bitbucket Cloud: POST {api}/repositories/{workspace}/{repo}/commit/{sha}/statuses/build
	FormatBitbucketServerStatus = "bitbucket-server-status" // Bitbucket Data Center: POST {host}/rest/build-status/1.0/commits/{sha}
	FormatAzureStatus           = "azure-status"            // Azure DevOps: POST {host}/{org}/{project}/_apis/git/repositories/{repo}/commits/{sha}/statuses
)

// StatusFormats are the forges' commit status formats.
var StatusFormats = []string{FormatGitHubStatus, FormatGiteaStatus, FormatGitLabStatus, FormatBitbucketStatus, FormatBitbucketServerStatus, FormatAzureStatus}

// isStatus says whether format is a forge's commit status API.
func isStatus(format string) bool {
	return slices.Contains(StatusFormats, format)
}

// tokenNeeds is what a token needs to set commit statuses, by format.
var tokenNeeds = map[string]string{
	FormatGitHubStatus:          "GitHub: repo:status, or Commit statuses: write",
	FormatGiteaStatus:           "Gitea, Forgejo: write:repository",
	FormatGitLabStatus:          "GitLab: api, as a Developer of the project",
	FormatBitbucketStatus:       "Bitbucket Cloud: repository:write",
	FormatBitbucketServerStatus: "Bitbucket Data Center: read of the repository",
	FormatAzureStatus:           "Azure DevOps: Code (status)",
}

// needsLink says whether format's statuses must link somewhere (the
// Bitbucket APIs refuse a status without its url).
func needsLink(format string) bool {
	return format == FormatBitbucketStatus || format == FormatBitbucketServerStatus
}

// The states a run's commit goes through, as the reporter keeps them in
// the notified bucket (GitLab names failure failed, and a started run
// running).
const (
	statePending = "pending"
	stateSuccess = "success"
	stateFailure = "failure"
)

// runState is the state of its commit an event of a run says, and the
// status's description (GitHub takes 140 characters); "" for an event that
// changes no state.
func runState(m bus.Message) (state, description string, err error) {
	switch m.Name {
	case events.BuildRequested:
		req, err := events.Decode[events.BuildRequest](m.Event)
		return statePending, "building " + req.Target, err
	case events.BuildCompleted: // a tag's run: its commit is known from now on
		res, err := events.Decode[events.BuildResult](m.Event)
		return statePending, fmt.Sprintf("built %s: pushing, verifying", shortDigest(res.Graph.Root.Digest.String())), err
	case events.Promoted:
		p, err := events.Decode[events.Promotion](m.Event)
		return stateSuccess, fmt.Sprintf("promoted to %s: %s", p.Environment, shortDigest(p.Digest)), err
	case events.Superseded:
		s, err := events.Decode[events.Supersession](m.Event)
		return stateSuccess, fmt.Sprintf("superseded by run %.8s, requested later: nothing failed", s.By), err
	case events.PromotionRejected:
		rj, err := events.Decode[events.Rejection](m.Event)
		return stateFailure, fmt.Sprintf("rejected for %s at gate %s: %s", rj.Environment, rj.Gate, rj.Reason), err
	case events.BuildFailed, events.PushFailed, events.VerifyFailed:
		f, err := events.Decode[events.Failure](m.Event)
		return stateFailure, fmt.Sprintf("%s failed at %s (%s): %s", strings.TrimSuffix(string(m.Name), ".failed"), cmp.Or(f.Stage, "?"), f.Class, f.Message), err
	}
	return "", "", nil
}

func shortDigest(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12] + "…"
	}
	return d
}

// commit is a run's pushed commit on a forge.
type commit struct {
	host, repo, sha string // repo: owner/name, group/subgroup/project
	image           string // the repository it builds: a context of its own, each image of a monorepo its status
	// built says the commit is the one the build checked out, known once
	// it is built or fails after its checkout: a tag's push may name the
	// tag object, not its commit (Bitbucket Data Center, Azure DevOps),
	// and the forges set no status on a tag object.
	built bool
}

// pushedCommit reads the commit a run builds from its build.requested
// (the run's first event when a push started it) or, for a tag's push,
// from what its build checked out; ok is false for a run that did not
// start from a push (a promotion, an admission, a build of a directory)
// and for a tag's run not checked out (yet).
func (s *sender) pushedCommit(ctx context.Context, m bus.Message) (c commit, ok bool, err error) {
	req, ok, err := runData[events.BuildRequest](ctx, s.stream, m, events.BuildRequested)
	if err != nil || !ok || req.Source.Kind != events.SourceGit {
		return commit{}, false, err
	}
	// The repository pushed to (origin) when the build cloned it from a
	// mirror, unless this rule reports on the mirror's host (as rules did
	// before requests named their origin).
	host, repo := repositoryOf(req.Source.URL)
	if origin, originRepo := repositoryOf(req.Source.Origin); origin != "" && host != s.rule.forgeHost() {
		host, repo = origin, originRepo
	}
	image := req.Target
	if ref, err := name.ParseReference(req.Target); err == nil {
		image = ref.Context().RepositoryStr() // without the registry (host:port) and the tag
	}
	c = commit{host: host, repo: repo, sha: req.Source.Revision(), image: image}
	if !strings.HasPrefix(req.Source.Ref, "refs/tags/") {
		return c, repo != "" && c.sha != "", nil
	}
	c.sha, err = s.builtCommit(ctx, m)
	c.built = true
	return c, repo != "" && events.IsCommitID(c.sha), err
}

// builtCommit is the commit a run's build checked out, from its
// build.completed or, for a build that failed once checked out, its
// build.failed; "" while neither is stored.
func (s *sender) builtCommit(ctx context.Context, m bus.Message) (string, error) {
	res, ok, err := runData[events.BuildResult](ctx, s.stream, m, events.BuildCompleted)
	if err != nil || ok {
		return res.Commit, err
	}
	f, _, err := runData[events.Failure](ctx, s.stream, m, events.BuildFailed)
	return f.Commit, err
}

// runData is the data of the run's event named want: m's own, or the
// latest the stream holds; ok is false when the run has none.
func runData[T any](ctx context.Context, stream jetstream.Stream, m bus.Message, want events.Name) (data T, ok bool, err error) {
	ev := m.Event
	if m.Name != want {
		msg, err := stream.GetLastMsgForSubject(ctx, want.Subject(events.RunID(m.Event)))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return data, false, nil
		}
		if err != nil {
			return data, false, fmt.Errorf("read the run's %s: %w", want, err)
		}
		if ev, _, err = events.Parse(msg.Data); err != nil {
			return data, false, nil
		}
	}
	data, err = events.Decode[T](ev)
	return data, err == nil, nil
}

// repositoryOf is the host and path (owner/name) of a clone URL:
// https://github.com/acme/app.git and git@github.com:acme/app.git are
// github.com and acme/app.
func repositoryOf(clone string) (host, repo string) {
	if u, err := url.Parse(clone); err == nil && u.Host != "" {
		host, repo = u.Hostname(), u.Path
	} else if at, path, ok := strings.Cut(clone, ":"); ok { // scp-like: user@host:path
		_, h, _ := strings.Cut(at, "@")
		host, repo = cmp.Or(h, at), path
	}
	return strings.ToLower(host), strings.TrimSuffix(strings.Trim(repo, "/"), ".git")
}

// forgeHost is the host whose repositories a status rule reports on: its
// forge, else its API's host (api.github.com is github.com's).
func (r Rule) forgeHost() string {
	if r.Forge != "" {
		return strings.ToLower(r.Forge)
	}
	u, err := url.Parse(r.URL)
	if err != nil {
		return ""
	}
	return strings.ToLower(strings.TrimPrefix(u.Hostname(), "api."))
}

// notifyStatus sets the state m says on its run's commit, when the run
// was started by a push to a repository of the rule's forge. The states
// of a run are sent in order, whatever order its events come in: a run
// that ended is never set back to pending, and a state is sent once.
func (s *sender) notifyStatus(ctx context.Context, m bus.Message) error {
	state, description, err := runState(m)
	if err != nil {
		return bus.Permanent(err)
	}
	if state == "" {
		return nil
	}
	c, ok, err := s.pushedCommit(ctx, m)
	if err != nil || !ok || c.host != s.rule.forgeHost() {
		return err
	}
	if m.Name == events.BuildCompleted && !c.built {
		return nil // a branch's run: pending was set when it was requested
	}
	run := events.RunID(m.Event)
	key := s.rule.Name + ".status." + keySafe(run)
	rev, last, err := s.claimRun(ctx, key)
	if err != nil {
		return err
	}
	release := func(value string) {
		if value == "" {
			_ = s.sent.Delete(context.WithoutCancel(ctx), key, jetstream.LastRevision(rev))
			return
		}
		if _, err := s.sent.Update(context.WithoutCancel(ctx), key, []byte(value), rev); err != nil {
			s.log.Warn(fmt.Sprintf("set %s on %s@%s, but could not remember it: %v", value, c.repo, c.sha, err), "run_id", run)
		}
	}
	if last == state || (state == statePending && last != "") {
		release(last) // sent already, or the run ended: its end stays
		return nil
	}
	if err := s.sendStatus(ctx, c, state, description, run); err != nil {
		release(last)
		return fmt.Errorf("webhook %s, %s status of %s@%s: %w", s.rule.Name, state, c.repo, c.sha, err)
	}
	s.log.Info(fmt.Sprintf("set %s on %s@%.12s (%s)", state, c.repo, c.sha, s.rule.Name), "run_id", run)
	release(state)
	return nil
}

// keySafe is s as a bucket key's token may hold it.
func keySafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// claimRun makes this handler the one that sets a status of the run
// (key), waiting while another handler sets one, and returns the state
// set last ("" for none). A claim older than s.stale is a sender that died
// mid-way, and is taken over.
func (s *sender) claimRun(ctx context.Context, key string) (rev uint64, last string, err error) {
	for {
		rev, err := s.sent.Create(ctx, key, []byte(sending))
		if err == nil {
			return rev, "", nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, "", fmt.Errorf("webhook %s: claim the run's status: %w", s.rule.Name, err)
		}
		e, err := s.sent.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			continue
		case err != nil:
			return 0, "", fmt.Errorf("webhook %s: read the run's status: %w", s.rule.Name, err)
		case string(e.Value()) != sending:
			if rev, err := s.sent.Update(ctx, key, []byte(sending), e.Revision()); err == nil {
				return rev, string(e.Value()), nil
			}
			continue // another handler claimed it meanwhile
		case time.Since(e.Created()) > s.stale:
			if rev, err := s.sent.Update(ctx, key, []byte(sending), e.Revision()); err == nil {
				return rev, "", nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, "", fmt.Errorf("webhook %s: wait for another handler setting the run's status: %w", s.rule.Name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// sendStatus sets state on the commit through the forge's API.
func (s *sender) sendStatus(ctx context.Context, c commit, state, description, run string) error {
	if r := []rune(description); len(r) > 140 { // GitHub refuses a longer one
		description = string(r[:139]) + "…"
	}
	link := ""
	if s.pageURL != "" {
		link = s.pageURL + "/runs/" + run
	}
	endpoint, status, err := statusRequest(s.rule.Format, strings.TrimSuffix(s.rule.URL, "/"), c, state, description, link)
	if err != nil {
		return bus.Permanent(err)
	}
	code, said, err := s.postJSON(ctx, endpoint, status, "is the forge's API up? the status is retried, then dead-lettered")
	if err != nil {
		return err
	}
	if code == http.StatusUnauthorized || code == http.StatusForbidden || code == http.StatusNotFound {
		return bus.Permanent(sendFailure(failure.Auth, "give the token in the rule's headers the right to set commit statuses ("+tokenNeeds[s.rule.Format]+")",
			fmt.Errorf("HTTP %d: %s: the token cannot set statuses on %s", code, said, c.repo)))
	}
	return statusError(code, said)
}

// statusRequest is the request of format's forge (its API at base) that
// sets state on c, linking link: where it is sent, and what.
func statusRequest(format, base string, c commit, state, description, link string) (endpoint string, body any, err error) {
	statusName := "digestline/" + c.image
	switch format {
	case FormatGitLabStatus:
		return fmt.Sprintf("%s/projects/%s/statuses/%s", base, url.PathEscape(c.repo), c.sha), omitEmpty(map[string]any{
			"state": map[string]string{statePending: "running", stateSuccess: "success", stateFailure: "failed"}[state],
			"name":  statusName, "target_url": link, "description": description,
		}), nil
	case FormatBitbucketStatus, FormatBitbucketServerStatus:
		endpoint = fmt.Sprintf("%s/repositories/%s/commit/%s/statuses/build", base, c.repo, c.sha)
		if format == FormatBitbucketServerStatus {
			endpoint = fmt.Sprintf("%s/rest/build-status/1.0/commits/%s", base, c.sha)
		}
		return endpoint, map[string]any{
			"key":   bitbucketKey(statusName),
			"state": map[string]string{statePending: "INPROGRESS", stateSuccess: "SUCCESSFUL", stateFailure: "FAILED"}[state],
			"name":  statusName, "url": link, "description": description,
		}, nil
	case FormatAzureStatus:
		project, repo, ok := strings.Cut(c.repo, "/_git/")
		if !ok {
			return "", nil, failure.New(failure.Input, fmt.Errorf("%s is not an Azure DevOps repository's path (ORG/PROJECT/_git/REPO)", c.repo),
				"point the azure-status rule's forge at the Azure DevOps host the repositories are cloned from")
		}
		segments := strings.Split(project, "/")
		for i, seg := range segments {
			segments[i] = url.PathEscape(seg)
		}
		return fmt.Sprintf("%s/%s/_apis/git/repositories/%s/commits/%s/statuses?api-version=7.0", base, strings.Join(segments, "/"), url.PathEscape(repo), c.sha),
			omitEmpty(map[string]any{
				"state":       map[string]string{statePending: "pending", stateSuccess: "succeeded", stateFailure: "failed"}[state],
				"context":     map[string]string{"genre": "digestline", "name": c.image},
				"targetUrl":   link,
				"description": description,
			}), nil
	}
	return fmt.Sprintf("%s/repos/%s/statuses/%s", base, c.repo, c.sha), omitEmpty(map[string]any{
		"state": state, "context": statusName, "target_url": link, "description": description,
	}), nil
}

// bitbucketKey is a status's key as Bitbucket Cloud takes it: at most 40
// characters (a longer one is refused with 400), so a long one is its
// hash, the same for each of the run's states.
func bitbucketKey(statusName string) string {
	if len(statusName) <= 40 {
		return statusName
	}
	sum := sha256.Sum256([]byte(statusName))
	return "digestline-" + hex.EncodeToString(sum[:])[:29]
}

// omitEmpty is fields without the empty ones (no link without a page).
func omitEmpty(fields map[string]any) map[string]any {
	maps.DeleteFunc(fields, func(_ string, v any) bool { return v == "" })
	return fields
}
