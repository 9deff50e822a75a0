package notifier

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The kinds of notification a rule can ask for.
const (
	KindPromoted     = "promoted"      // promoted, not a rollback
	KindRolledBack   = "rolled-back"   // promoted by a rollback, by hand or automatic
	KindRejected     = "rejected"      // promotion.rejected: a gate refused
	KindFailed       = "failed"        // build.failed, push.failed, verify.failed
	KindDeployFailed = "deploy-failed" // deployment.reported, failed
	KindFrozen       = "frozen"        // environment.frozen: by someone, or a window of the policy began
	KindUnfrozen     = "unfrozen"      // environment.unfrozen
	// KindStatus is every change of a run's state, for a forge's commit
	// status API (the status formats): its request, its promotion or
	// supersession, its failure or rejection.
	KindStatus = "status"
)

// Kinds are every kind of notification, in the order a file lists them.
var Kinds = []string{KindPromoted, KindRolledBack, KindRejected, KindFailed, KindDeployFailed, KindFrozen, KindUnfrozen}

// Formats a webhook takes.
const (
	FormatSlack       = "slack"       // {"text": …}: Slack's incoming webhooks, and the chat tools that take their JSON
	FormatCloudEvents = "cloudevents" // the event itself, CloudEvents over HTTP (binary mode)
	// and the commit status APIs of the forges: status.go
)

// Rule sends the notifications of Kinds, of Environments (every one when
// none), to URL in Format.
type Rule struct {
	Name         string            `yaml:"name"`
	Kinds        []string          `yaml:"events"`
	Environments []string          `yaml:"environments"`
	URL          string            `yaml:"url"`
	Format       string            `yaml:"format"`
	Headers      map[string]string `yaml:"headers"`
	// Forge is the host whose repositories a status format's rule reports
	// on (default: its URL's host, api.github.com's being github.com).
	Forge string `yaml:"forge"`
}

// file is the notifications file.
type file struct {
	Webhooks []Rule `yaml:"webhooks"`
}

var (
	ruleName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	envVar   = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)
)

// LoadRules reads the notifications file at path. URLs and header values
// may name environment variables as ${NAME} (a webhook's secret path, a
// bearer token): they are read from the environment now, and a variable
// that is not set is an error naming it. Every error names the file and
// the rule.
func LoadRules(path string) ([]Rule, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("notifications: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f file
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("notifications %s: %w", path, err)
	}
	if len(f.Webhooks) == 0 {
		return nil, fmt.Errorf("notifications %s: no webhooks", path)
	}
	seen := map[string]bool{}
	for i := range f.Webhooks {
		r := &f.Webhooks[i]
		if err := r.check(seen); err != nil {
			return nil, fmt.Errorf("notifications %s: webhook %d (%s): %w", path, i+1, r.Name, err)
		}
	}
	return f.Webhooks, nil
}

// check validates r and reads its ${NAME}s from the environment.
func (r *Rule) check(seen map[string]bool) error {
	if !ruleName.MatchString(r.Name) || seen[r.Name] {
		return fmt.Errorf("name %q: want a unique name of lower-case letters, digits and '-' (it names the rule's consumer)", r.Name)
	}
	seen[r.Name] = true
	switch {
	case isStatus(r.Format):
		if len(slices.DeleteFunc(slices.Clone(r.Kinds), func(k string) bool { return k == KindStatus })) > 0 || len(r.Environments) > 0 {
			return fmt.Errorf("format %s reports every run a push started on its commit: it takes no events or environments", r.Format)
		}
		r.Kinds = []string{KindStatus}
	case r.Forge != "":
		return fmt.Errorf("forge: only the status formats (%s) take it", strings.Join(StatusFormats, ", "))
	case len(r.Kinds) == 0:
		return fmt.Errorf("events: name one or more of %s", strings.Join(Kinds, ", "))
	}
	for _, k := range r.Kinds {
		if !slices.Contains(Kinds, k) && !isStatus(r.Format) {
			return fmt.Errorf("event %q: want one of %s", k, strings.Join(Kinds, ", "))
		}
	}
	switch r.Format {
	case "":
		r.Format = FormatSlack
	case FormatSlack, FormatCloudEvents:
	default:
		if !isStatus(r.Format) {
			return fmt.Errorf("format %q: want %s, %s or a forge's commit statuses: %s", r.Format, FormatSlack, FormatCloudEvents, strings.Join(StatusFormats, ", "))
		}
	}
	var err error
	if r.URL, err = expand(r.URL); err != nil {
		return fmt.Errorf("url: %w", err)
	}
	if u, perr := url.Parse(r.URL); perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url: want an http or https URL") // the URL itself may be a secret: not repeated
	}
	for k, v := range r.Headers {
		if r.Headers[k], err = expand(v); err != nil {
			return fmt.Errorf("header %s: %w", k, err)
		}
	}
	return nil
}

// expand replaces each ${NAME} in s with the variable's value.
func expand(s string) (string, error) {
	var missing []string
	out := envVar.ReplaceAllStringFunc(s, func(m string) string {
		name := envVar.FindStringSubmatch(m)[1]
		v, ok := os.LookupEnv(name)
		if !ok {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("%s is not set", strings.Join(missing, ", "))
	}
	return out, nil
}

// wants reports whether r asks for a notification of kind in env ("":
// an event of no one environment, which only a rule for every environment
// takes).
func (r Rule) wants(kind, env string) bool {
	return slices.Contains(r.Kinds, kind) && (len(r.Environments) == 0 || env != "" && slices.Contains(r.Environments, env))
}
