package policy

import (
	"cmp"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Place is where an environment lives: a repository, and the tag its
// promotions move, as templates. {env} is the environment, {registry} the
// registry builds are pushed to and {path} the repository's path there:
// "registry-b.example/prod/{path}:{env}" keeps every application's prod in
// registry B under prod/. Without a tag, the reporter's TagFormat is used.
type Place struct {
	Repository string
	Tag        string
}

// ParsePlace reads REGISTRY/PATH[:TAG], each part a template, and checks it
// makes a valid repository and tag.
func ParsePlace(s string) (Place, error) {
	s = strings.TrimSpace(s)
	var p Place
	p.Repository = s
	// A tag follows the last ":" after the last "/": a registry's port
	// comes before the path.
	if i := strings.LastIndex(s, ":"); i > strings.LastIndex(s, "/") {
		p.Repository, p.Tag = s[:i], s[i+1:]
	}
	example := p.Resolve("prod", "registry.example", "team/app", "{env}")
	if _, err := name.NewRepository(example.Repository, name.StrictValidation); err != nil {
		return Place{}, fmt.Errorf("place %q: want REGISTRY/PATH[:TAG] (with {env}, {registry}, {path}), which gives %q here: %w", s, example.Repository, err)
	}
	if _, err := name.NewTag(example.Repository + ":" + example.Tag); err != nil {
		return Place{}, fmt.Errorf("place %q: the tag %q is not a valid tag: %w", s, example.Tag, err)
	}
	return p, nil
}

// String is the place as it is written.
func (p Place) String() string {
	if p.Tag == "" {
		return p.Repository
	}
	return p.Repository + ":" + p.Tag
}

// Resolve fills the place's templates for env and the registry and path
// builds are pushed to; tagFormat is the tag when the place names none.
func (p Place) Resolve(env, registry, path, tagFormat string) Place {
	r := strings.NewReplacer("{env}", env, "{registry}", registry, "{path}", path)
	return Place{Repository: r.Replace(p.Repository), Tag: r.Replace(cmp.Or(p.Tag, tagFormat))}
}

// ParsePlaces reads environments' places, as DIGESTLINE_PLACES and
// --places give them: "prod=registry-b.example/prod/{path}:{env};staging=…".
func ParsePlaces(s string) (map[string]Place, error) {
	out := map[string]Place{}
	for entry := range strings.SplitSeq(s, ";") {
		if strings.TrimSpace(entry) == "" {
			continue
		}
		env, place, ok := strings.Cut(entry, "=")
		env = strings.TrimSpace(env)
		if !ok || env == "" {
			return nil, fmt.Errorf("places: %q: want ENV=REGISTRY/PATH[:TAG]", entry)
		}
		if _, dup := out[env]; dup {
			return nil, fmt.Errorf("places: %s has two places", env)
		}
		p, err := ParsePlace(place)
		if err != nil {
			return nil, fmt.Errorf("places: %s: %w", env, err)
		}
		out[env] = p
	}
	return out, nil
}
