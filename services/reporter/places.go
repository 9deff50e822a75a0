package reporter

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/digestline/digestline/pkg/policy"
	"github.com/google/go-containerregistry/pkg/name"
)

// mergePlaces joins the places given by flags or the environment with the
// policy file's; an environment given two different places is an error.
func mergePlaces(given, fromPolicy map[string]policy.Place, chain []string) (map[string]policy.Place, error) {
	out := maps.Clone(given)
	if out == nil {
		out = map[string]policy.Place{}
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
	at := p.Resolve(env, app.RegistryStr(), app.RepositoryStr(), r.cfg.TagFormat)
	repo, err := name.NewRepository(at.Repository)
	if err != nil {
		return name.Repository{}, "", fmt.Errorf("%s's place %s gives %q for %s: %w", env, p, at.Repository, repository, err)
	}
	return repo, at.Tag, nil
}
