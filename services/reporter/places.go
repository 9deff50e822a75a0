package reporter

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
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
	example := p.resolve("prod", "registry.example", "team/app", "{env}")
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

// resolve fills the place's templates for env and the registry and path
// builds are pushed to; tagFormat is the tag when the place names none.
func (p Place) resolve(env, registry, path, tagFormat string) Place {
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

// mergePlaces joins the places given by flags or the environment with the
// policy file's; an environment given two different places is an error.
func mergePlaces(given, fromPolicy map[string]Place, chain []string) (map[string]Place, error) {
	out := maps.Clone(given)
	if out == nil {
		out = map[string]Place{}
	}
	for env, p := range fromPolicy {
		if q, ok := out[env]; ok && q != p {
			return nil, fmt.Errorf("environment %s has two places: %s (flags or DIGESTLINE_PLACES) and %s (the policy file)", env, q, p)
		}
		out[env] = p
	}
	for env := range out {
		if !slices.Contains(chain, env) {
			return nil, fmt.Errorf("places: environment %q is not in the promotion chain %s", env, strings.Join(chain, " → "))
		}
	}
	return out, nil
}

// placeOf is where env lives for the application pushed to repository:
// its repository and the tag promotions move there. Without a place, it
// is the repository itself, and the tag format's tag.
func (r *reporter) placeOf(env, repository string) (name.Repository, string, error) {
	app, err := name.NewRepository(repository)
	if err != nil {
		return name.Repository{}, "", err
	}
	p, ok := r.cfg.Places[env]
	if !ok {
		return app, r.tagOf(env), nil
	}
	at := p.resolve(env, app.RegistryStr(), app.RepositoryStr(), r.cfg.TagFormat)
	repo, err := name.NewRepository(at.Repository)
	if err != nil {
		return name.Repository{}, "", fmt.Errorf("%s's place %s gives %q for %s: %w", env, p, at.Repository, repository, err)
	}
	return repo, at.Tag, nil
}
