package builder

import (
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// SLSA provenance v1 (sign.PredicateSLSAProvenance), as the builder
// attests it for each image it signs (https://slsa.dev/spec/v1.0/provenance).
const (
	// BuildType names how digestline builds: externalParameters are the
	// request's source and build spec (docs/provenance.md).
	BuildType = "https://github.com/digestline/digestline/blob/main/docs/provenance.md#build-type-v1"
	// BuilderID names the builder service.
	BuilderID = "https://github.com/digestline/digestline/services/builder"
)

// Origin is where a build's input came from, as its provenance records.
type Origin struct {
	Source events.Source // as requested
	Commit string        // for a git source: the commit the revision resolved to
	RunID  string        // the run that built it (the provenance's invocation id)
}

// Provenance is the SLSA provenance v1 predicate.
type Provenance struct {
	BuildDefinition BuildDefinition `json:"buildDefinition"`
	RunDetails      RunDetails      `json:"runDetails"`
}

// BuildDefinition is what was built from what.
type BuildDefinition struct {
	BuildType            string               `json:"buildType"`
	ExternalParameters   ExternalParameters   `json:"externalParameters"`
	ResolvedDependencies []ResourceDescriptor `json:"resolvedDependencies,omitempty"`
}

// ExternalParameters are the request's: where the source is, and the spec.
type ExternalParameters struct {
	Source events.Source    `json:"source"`
	Spec   events.BuildSpec `json:"spec"`
}

// ResourceDescriptor names an input by URI and digest.
type ResourceDescriptor struct {
	Name   string            `json:"name,omitempty"`
	URI    string            `json:"uri,omitempty"`
	Digest map[string]string `json:"digest,omitempty"`
}

// RunDetails say who built it, when.
type RunDetails struct {
	Builder  BuilderIdentity `json:"builder"`
	Metadata BuildMetadata   `json:"metadata"`
}

// BuilderIdentity is the builder and its version.
type BuilderIdentity struct {
	ID      string            `json:"id"`
	Version map[string]string `json:"version,omitempty"`
}

// BuildMetadata is the run's id and times.
type BuildMetadata struct {
	InvocationID string    `json:"invocationId,omitempty"`
	StartedOn    time.Time `json:"startedOn"`
	FinishedOn   time.Time `json:"finishedOn"`
}

// provenance describes the build of image from origin with spec, started
// at started: its source, its base image, the builder and its version.
func provenance(image v1.Descriptor, base *oci.BaseImage, origin Origin, spec events.BuildSpec, started time.Time) Provenance {
	var p Provenance
	p.BuildDefinition.BuildType = BuildType
	src := origin.Source
	src.URL = redactGitURL(src.URL) // never a credential in a URL
	p.BuildDefinition.ExternalParameters = ExternalParameters{Source: src, Spec: spec}
	if src, ok := sourceDescriptor(origin); ok {
		p.BuildDefinition.ResolvedDependencies = append(p.BuildDefinition.ResolvedDependencies, src)
	}
	if base != nil {
		p.BuildDefinition.ResolvedDependencies = append(p.BuildDefinition.ResolvedDependencies, ResourceDescriptor{
			Name: "base", URI: "oci://" + base.Name, Digest: map[string]string{base.Digest.Algorithm().String(): base.Digest.Encoded()}})
	}
	p.RunDetails.Builder = BuilderIdentity{ID: BuilderID, Version: map[string]string{"digestline": version()}}
	p.RunDetails.Metadata = BuildMetadata{InvocationID: origin.RunID, StartedOn: started.UTC(), FinishedOn: time.Now().UTC()}
	return p
}

// sourceDescriptor names the source as SLSA does: a git repository by
// git+URL@revision and its commit, a tarball by its digest, a directory
// by its path (no digest: a tree is not hashed twice).
func sourceDescriptor(o Origin) (ResourceDescriptor, bool) {
	switch o.Source.Kind {
	case events.SourceGit:
		d := ResourceDescriptor{Name: "source", URI: "git+" + redactGitURL(o.Source.URL)}
		if o.Source.Rev != "" {
			d.URI += "@" + o.Source.Rev
		}
		if o.Commit != "" {
			d.Digest = map[string]string{"gitCommit": o.Commit}
		}
		return d, true
	case events.SourceObject:
		if d, err := digest.Parse(o.Source.Object); err == nil {
			return ResourceDescriptor{Name: "source", URI: "digestline-object:" + d.String(), Digest: map[string]string{d.Algorithm().String(): d.Encoded()}}, true
		}
	case events.SourceDir:
		if abs, err := filepath.Abs(o.Source.Path); err == nil {
			return ResourceDescriptor{Name: "source", URI: "file://" + abs}, true
		}
	}
	return ResourceDescriptor{}, false
}

// version is the builder's module version (as built: "(devel)" from a
// checkout), read from the build info once.
var version = sync.OnceValue(func() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "github.com/digestline/digestline/services/builder" {
				return m.Version
			}
		}
		return bi.Main.Version
	}
	return "unknown"
})
