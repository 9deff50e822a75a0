package verify

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/digestline/digestline/pkg/evidence"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/sign"
)

// Provenance is a SLSA provenance an image must carry, signed by a
// trusted key: from this builder and built from this source repository
// ("" accepts any).
type Provenance struct {
	Builder string
	Source  string
}

// slsaV02 is the predicate type of SLSA provenance v0.2, which many
// builders still write.
const slsaV02 = "https://slsa.dev/provenance/v0.2"

// provenanceOf is what a SLSA provenance (v1 or v0.2) says about who built
// the image and from what: its builder id and the URIs of its sources.
type provenanceOf struct {
	// v1
	BuildDefinition struct {
		ExternalParameters   map[string]any `json:"externalParameters"`
		ResolvedDependencies []struct {
			URI string `json:"uri"`
		} `json:"resolvedDependencies"`
	} `json:"buildDefinition"`
	RunDetails struct {
		Builder struct {
			ID string `json:"id"`
		} `json:"builder"`
	} `json:"runDetails"`
	// v0.2
	Builder struct {
		ID string `json:"id"`
	} `json:"builder"`
	Invocation struct {
		ConfigSource struct {
			URI string `json:"uri"`
		} `json:"configSource"`
	} `json:"invocation"`
	Materials []struct {
		URI string `json:"uri"`
	} `json:"materials"`
}

// builder is the provenance's builder id.
func (p provenanceOf) builder() string {
	if p.RunDetails.Builder.ID != "" {
		return p.RunDetails.Builder.ID
	}
	return p.Builder.ID
}

// sources are the repositories the provenance says the image was built
// from: its resolved dependencies' and materials' URIs, its config
// source, and every string among its external parameters that names one.
func (p provenanceOf) sources() []string {
	var out []string
	for _, d := range p.BuildDefinition.ResolvedDependencies {
		out = append(out, d.URI)
	}
	for _, m := range p.Materials {
		out = append(out, m.URI)
	}
	out = append(out, p.Invocation.ConfigSource.URI)
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			out = append(out, v)
		case map[string]any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(p.BuildDefinition.ExternalParameters)
	return out
}

// repositories are the repositories among the provenance's sources, each
// once, as a person compares them with a rule's source: the URLs, without
// git+ and the ref.
func (p provenanceOf) repositories() []string {
	var out []string
	for _, s := range p.sources() {
		if r := repositoryOf(s); strings.Contains(r, "://") && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// sameRepository says whether uri names the repository source names:
// git+https://github.com/org/app.git@refs/heads/main is
// https://github.com/org/app.
func sameRepository(uri, source string) bool {
	return uri != "" && repositoryOf(uri) == repositoryOf(source)
}

// repositoryOf is the repository a source URI names, without git+, the
// ref after @, a trailing slash or .git.
func repositoryOf(s string) string {
	s = strings.TrimPrefix(s, "git+")
	if i := strings.Index(s, "@"); i > strings.Index(s, "://")+2 && strings.Contains(s, "://") {
		s = s[:i]
	}
	return strings.TrimSuffix(strings.TrimSuffix(s, "/"), ".git")
}

// requireProvenance finds, among the proven attestations, a SLSA
// provenance from want's builder and source, and returns its [VERIFY] line.
func requireProvenance(atts []evidence.Attestation, keys []sign.Verifier, want Provenance) (string, error) {
	var seen []string
	for _, a := range atts {
		if a.Statement.PredicateType != sign.PredicateSLSAProvenance && a.Statement.PredicateType != slsaV02 ||
			!slices.ContainsFunc(keys, func(k sign.Verifier) bool { return k.KeyID() == a.KeyID }) {
			continue
		}
		var p provenanceOf
		if err := json.Unmarshal(a.Statement.Predicate, &p); err != nil {
			continue
		}
		builderOK := want.Builder == "" || p.builder() == want.Builder
		sourceOK := want.Source == ""
		for _, s := range p.sources() {
			sourceOK = sourceOK || sameRepository(s, want.Source)
		}
		if builderOK && sourceOK {
			return fmt.Sprintf("[VERIFY] provenance %s by key %s: builder %s, source %s", a.Digest, a.KeyID, p.builder(), cmp.Or(want.Source, "any")), nil
		}
		seen = append(seen, fmt.Sprintf("%s (builder %s, from %s)", a.Digest, cmp.Or(p.builder(), "not named"), cmp.Or(strings.Join(p.repositories(), ", "), "no repository")))
	}
	msg := fmt.Sprintf("no SLSA provenance from builder %s and source %s: ", cmp.Or(want.Builder, "any"), cmp.Or(want.Source, "any"))
	var err error = unsigned(msg + "none is attached, signed by a trusted key")
	if len(seen) > 0 {
		err = errors.New(msg + "found " + strings.Join(seen, ", "))
	}
	return "", &failure.Error{Class: failure.Integrity, Path: "manifest → referrers", Err: err,
		Hint: "the rule requires provenance from that builder and source: attest the build there (cosign attest --type slsaprovenance1 --key …), or change the rule's provenance"}
}
