package builder

// The webhook config's rules: which repository's pushes build which
// images, from which directory, for which branches, tags and paths.

import (
	"cmp"
	"fmt"
	"os"
	pathpkg "path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/google/go-containerregistry/pkg/name"
	"sigs.k8s.io/yaml"
)

// WebhookConfig maps repositories that send webhooks to what is built.
type WebhookConfig struct {
	// Secret checks GitHub's X-Hub-Signature-256 and Bitbucket's
	// X-Hub-Signature (HMAC-SHA256 of the body), and is the bearer token
	// of /webhooks/cloudevents and the password of Azure DevOps's.
	Secret string `json:"-"`
	// GitLabToken is compared with GitLab's X-Gitlab-Token.
	GitLabToken string `json:"-"`
	// PageURL is the reporter's base URL (DIGESTLINE_API_URL): an accepted
	// webhook answers with its run's page there.
	PageURL string `json:"-"`
	// RegistryToken authenticates registries' notifications
	// (/webhooks/registry/…: registryhooks.go), as a bearer token or in
	// the URL's token parameter.
	RegistryToken string `json:"-"`
	// Repositories lists what to build for which repository.
	Repositories []WebhookRule `json:"repositories"`
	// Images lists which images other tools push are admitted
	// (admissions.go).
	Images []AdmissionRule `json:"images"`
	// Watches lists repositories whose registries send no notifications:
	// their tags are read on an interval instead (watch.go).
	Watches []WatchRule `json:"watches"`
}

// WebhookRule says how a push to one repository becomes a build.
type WebhookRule struct {
	// Match is the repository as the forge names it: owner/name on GitHub,
	// Gitea and Forgejo, group/project on GitLab, workspace/repository on
	// Bitbucket Cloud, PROJECT/repository on Bitbucket Data Center,
	// project/repository on Azure DevOps.
	Match string `json:"match"`
	// Git is the URL to clone (default: the clone URL the webhook carries).
	Git string `json:"git"`
	// Image is the image repository to push to, e.g. registry.example.com/team/app.
	Image string `json:"image"`
	// Tag is the image tag: {tag} (the git tag), {branch}, {sha} (12
	// characters) are replaced. Default: the git tag for a tag push, the
	// branch name otherwise.
	Tag string `json:"tag"`
	// PromoteTo is the environment the run promotes to (default: the first).
	PromoteTo string `json:"promoteTo"`
	// Dir is the directory of the repository to build, e.g. services/api
	// of a monorepo (default: the whole repository). Several rules may
	// match one repository: a push builds each one's image.
	Dir string `json:"dir"`
	// Branches and Tags, when either is set, are the refs the rule builds:
	// globs of branch and tag names (path.Match: * stops at /), e.g. main,
	// release/* and v*. Neither: every branch and tag.
	Branches []string `json:"branches"`
	Tags     []string `json:"tags"`
	// Paths, when set, build a push to a branch only when it changed a
	// file one of them matches (globs as digestline.yaml's), as far as the
	// forge's payload lists the files; a push whose files it does not list
	// (a new branch, a forced push, a tag, Bitbucket's and Azure DevOps's)
	// builds.
	Paths []string `json:"paths"`
}

// filtersRefs says whether the rule builds only some branches or tags.
func (r WebhookRule) filtersRefs() bool { return len(r.Branches) > 0 || len(r.Tags) > 0 }

// builds says whether the rule builds a push of this branch or tag (one
// of them is "").
func (r WebhookRule) builds(branch, tag string) bool {
	if !r.filtersRefs() {
		return true
	}
	name, patterns := branch, r.Branches
	if tag != "" {
		name, patterns = tag, r.Tags
	}
	return slices.ContainsFunc(patterns, func(p string) bool { ok, _ := pathpkg.Match(p, name); return ok })
}

// LoadWebhookConfig reads the rules from a YAML file (strict: an unknown key
// is an error), the secrets from DIGESTLINE_WEBHOOK_SECRET and
// DIGESTLINE_GITLAB_TOKEN, and the page's URL from DIGESTLINE_API_URL.
func LoadWebhookConfig(path string) (WebhookConfig, error) {
	cfg := WebhookConfig{Secret: os.Getenv("DIGESTLINE_WEBHOOK_SECRET"), GitLabToken: os.Getenv("DIGESTLINE_GITLAB_TOKEN"),
		RegistryToken: os.Getenv("DIGESTLINE_REGISTRY_WEBHOOK_TOKEN"), PageURL: strings.TrimSuffix(os.Getenv("DIGESTLINE_API_URL"), "/")}
	if path == "" {
		return cfg, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("webhook config: %w", err)
	}
	if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
		return cfg, fmt.Errorf("webhook config %s: %w", path, err)
	}
	for i, r := range cfg.Repositories {
		if r.Match == "" || r.Image == "" {
			return cfg, fmt.Errorf("webhook config %s: repositories[%d] needs match and image", path, i)
		}
		if _, err := name.NewRepository(r.Image); err != nil {
			return cfg, fmt.Errorf("webhook config %s: repositories[%d].image: %w", path, i, err)
		}
		if err := noCredentialIn(r.Git); err != nil {
			return cfg, fmt.Errorf("webhook config %s: repositories[%d].git: %w", path, i, err)
		}
		if r.Dir != "" && !filepath.IsLocal(filepath.FromSlash(r.Dir)) {
			return cfg, fmt.Errorf("webhook config %s: repositories[%d].dir %q: a directory of the repository, relative to its root (services/api)", path, i, r.Dir)
		}
		if err := oci.ValidatePatterns("repositories["+strconv.Itoa(i)+"].paths", r.Paths); err != nil {
			return cfg, fmt.Errorf("webhook config %s: %w", path, err)
		}
		for _, p := range slices.Concat(r.Branches, r.Tags) {
			if _, err := pathpkg.Match(p, ""); err != nil {
				return cfg, fmt.Errorf("webhook config %s: repositories[%d]: branch or tag pattern %q: %w", path, i, p, err)
			}
		}
		for _, o := range cfg.Repositories[:i] {
			if strings.EqualFold(o.Match, r.Match) && o.Image == r.Image && !o.filtersRefs() && !r.filtersRefs() {
				return cfg, fmt.Errorf("webhook config %s: repositories[%d]: %s builds %s twice for every push: give each rule of a repository its own image, or its own branches and tags", path, i, r.Match, r.Image)
			}
		}
	}
	for i := range cfg.Images {
		if err := cfg.Images[i].load(); err != nil {
			return cfg, fmt.Errorf("webhook config %s: images[%d]: %w", path, i, err)
		}
	}
	for i := range cfg.Watches {
		if err := cfg.Watches[i].load(); err != nil {
			return cfg, fmt.Errorf("webhook config %s: watches[%d]: %w", path, i, err)
		}
	}
	return cfg, nil
}

// mirrored is the pushed repository's clone URL when a rule's git clones
// it from elsewhere (events.Source.Origin), else "".
func mirrored(git, cloneURL string) string {
	if git == "" || git == cloneURL {
		return ""
	}
	return cloneURL
}

// buildRequests are the builds a push asks for under its repository's
// rules, or why it asks for none; an error when a rule makes no image tag
// of it.
func (h *Webhooks) buildRequests(p push) ([]events.BuildRequest, string, error) {
	// (CutPrefix gives back the whole ref when it is not of that kind.)
	branch, tagName := "", ""
	if b, ok := strings.CutPrefix(p.ref, "refs/heads/"); ok {
		branch = b
	} else if tg, ok := strings.CutPrefix(p.ref, "refs/tags/"); ok {
		tagName = tg
	} else {
		return nil, fmt.Sprintf("%s is neither a branch nor a tag", p.ref), nil
	}
	if m := skipped(p.message); m != "" {
		return nil, fmt.Sprintf("the pushed commit's message says %s", m), nil
	}
	sha := p.sha
	if len(sha) > 12 {
		sha = sha[:12]
	}
	var (
		reqs                 []events.BuildRequest
		otherRefs, unchanged []string
	)
	for _, rule := range h.cfg.Repositories {
		if !strings.EqualFold(rule.Match, p.repo) {
			continue
		}
		if !rule.builds(branch, tagName) {
			otherRefs = append(otherRefs, rule.Image)
			continue
		}
		if len(rule.Paths) > 0 && p.listed && !slices.ContainsFunc(p.changed, func(f string) bool { return oci.MatchesAny(rule.Paths, f) }) {
			unchanged = append(unchanged, rule.Image)
			continue
		}
		tag := cmp.Or(rule.Tag, tagName, branch)
		tag = strings.NewReplacer("{tag}", tagName, "{branch}", branch, "{sha}", sha).Replace(tag)
		tag = strings.ReplaceAll(tag, "/", "-") // a branch like feature/x becomes feature-x
		target := rule.Image + ":" + tag
		if _, err := name.NewTag(target); err != nil {
			return nil, "", fmt.Errorf("%s does not make an image tag: %v", target, err)
		}
		reqs = append(reqs, events.BuildRequest{
			Source: events.Source{Kind: events.SourceGit, URL: cmp.Or(rule.Git, p.cloneURL), Origin: mirrored(rule.Git, p.cloneURL), Rev: p.sha, Ref: p.ref, Dir: rule.Dir},
			Target: target, PromoteTo: rule.PromoteTo,
		})
	}
	switch {
	case len(reqs) > 0:
		return reqs, "", nil
	case len(unchanged) > 0:
		return nil, fmt.Sprintf("the push changed no file the paths of %s name", strings.Join(unchanged, ", ")), nil
	case len(otherRefs) > 0:
		return nil, fmt.Sprintf("%s is none of the branches and tags the rules of %s build (%s)", p.ref, p.repo, strings.Join(otherRefs, ", ")), nil
	}
	return nil, fmt.Sprintf("no rule for %s in the webhook config", p.repo), nil
}
