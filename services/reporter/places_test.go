package reporter

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/digestline/digestline/pkg/policy"
)

// TestAPlaceIsWhereAnEnvironmentLives: places are read from
// DIGESTLINE_PLACES and the policy file, filled in per application, and
// every bad one is an error at start that says what is wrong.
func TestAPlaceIsWhereAnEnvironmentLives(t *testing.T) {
	t.Parallel()
	places, err := policy.ParsePlaces(" prod=registry-b.example:5000/prod/{path}:{env}-live ; staging={registry}/staging/{path} ")
	if err != nil {
		t.Fatal(err)
	}
	r := &reporter{cfg: Config{Places: places, TagFormat: "{env}"}}
	for _, tc := range []struct{ env, repo, tag string }{
		{"prod", "registry-b.example:5000/prod/team/app", "prod-live"},
		{"staging", "registry-a.example/staging/team/app", "staging"},
		{"dev", "registry-a.example/team/app", "dev"}, // no place: where builds go
	} {
		repo, tag, err := r.placeOf(tc.env, "registry-a.example/team/app")
		if err != nil || repo.String() != tc.repo || tag != tc.tag {
			t.Errorf("%s lives at %v:%s (%v), want %s:%s", tc.env, repo, tag, err, tc.repo, tc.tag)
		}
	}

	for _, tc := range []struct{ places, says string }{
		{"prod", "want ENV=REGISTRY/PATH[:TAG]"},
		{"prod=registry-b.example/prod/{path};prod=registry-c.example/{path}", "prod has two places"},
		{"prod=prod", "want REGISTRY/PATH[:TAG]"},
		{"prod=registry-b.example/Prod/{path}", "want REGISTRY/PATH[:TAG]"},
		{"prod=registry-b.example/prod/{path}:{env}!", "is not a valid tag"},
	} {
		if _, err := policy.ParsePlaces(tc.places); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("ParsePlaces(%q) = %v, want an error saying %q", tc.places, err, tc.says)
		}
	}

	dir := t.TempDir()
	writePolicy := func(body string) string {
		p := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".yaml")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p, err := policy.Load(writePolicy("environments:\n  prod:\n    place: registry-b.example/prod/{path}\n"), DefaultEnvironments)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Places()["prod"]; got != (policy.Place{Repository: "registry-b.example/prod/{path}"}) || p.Has("prod") {
		t.Fatalf("the policy file's place: %+v (rules for prod: %v, want none)", got, p.Has("prod"))
	}
	if _, err := policy.Load(writePolicy("environments:\n  prod:\n    place: prod\n"), DefaultEnvironments); err == nil || !strings.Contains(err.Error(), "environment prod: place") {
		t.Errorf("a bad place in the policy file: %v", err)
	}
	for _, tc := range []struct {
		cfg  Config
		says string
	}{
		{Config{Policy: p, Places: map[string]policy.Place{"prod": {Repository: "registry-c.example/{path}"}}}, "prod has two places"},
		{Config{Places: map[string]policy.Place{"qa": {Repository: "registry-c.example/{path}"}}}, `"qa" is not in the promotion chain`},
	} {
		if err := Run(context.Background(), tc.cfg); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("Run with places %v = %v, want an error saying %q", tc.cfg.Places, err, tc.says)
		}
	}
	// The same place twice is no conflict.
	c := Config{Policy: p, Places: map[string]policy.Place{"prod": {Repository: "registry-b.example/prod/{path}"}}}
	if err := c.defaults(); err != nil || len(c.Places) != 1 {
		t.Fatalf("the same place from flags and the policy file: %v %+v", err, c.Places)
	}
}
