package builder_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/digestline/digestline/services/builder"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestASignedBuildAttestsItsProvenance: with a signer, the build attaches a
// cosign signature of the image and a signed SLSA provenance v1 statement
// about it, naming its source (a git repository at the resolved commit),
// its base image, the build spec, the builder and when it ran.
func TestASignedBuildAttestsItsProvenance(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signer, _ := sign.NewSigner(k)
	trusted, _ := sign.NewVerifier(&k.PublicKey)
	host := newRegistry(t)
	pushBase(t, host, "base/static", events.BuildSpec{})
	baseRef := host + "/base/static:1"
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "app"), []byte("app"), 0o755); err != nil {
		t.Fatal(err)
	}
	l, _ := oci.CreateLayout(t.TempDir())
	origin := builder.Origin{Source: events.Source{Kind: events.SourceGit, URL: "https://ci:s3cret@git.example/team/app.git", Rev: "refs/heads/main"},
		Commit: "0123456789abcdef0123456789abcdef01234567", RunID: "run-1"}
	before := time.Now().UTC().Add(-time.Second)
	g, err := builder.Build(ctx, src, events.BuildSpec{Base: baseRef, Entrypoint: []string{"/app"}},
		builder.Options{Registry: client(), Name: "registry.example/team/app", Signer: signer, Origin: origin}, l)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Referrers) != 2 || g.Referrers[0].Root.ArtifactType != sign.ArtifactTypeCosignSignature || g.Referrers[1].Root.ArtifactType != sign.MediaTypeBundle {
		t.Fatalf("referrers %+v, want a cosign signature and a sigstore bundle", g.Referrers)
	}
	var m v1.Manifest
	readJSONBlob(t, l, g.Referrers[1].Root, &m)
	rc, err := l.Open(ctx, m.Layers[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	content, _ := io.ReadAll(rc)
	_ = rc.Close()
	env, err := sign.EnvelopeOf(content)
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := sign.VerifyStatement(ctx, env, g.Root.Digest, []sign.Verifier{trusted})
	if err != nil || st.PredicateType != sign.PredicateSLSAProvenance {
		t.Fatalf("statement %+v: %v", st, err)
	}
	var p builder.Provenance
	if err := json.Unmarshal(st.Predicate, &p); err != nil {
		t.Fatal(err)
	}
	deps := map[string]builder.ResourceDescriptor{}
	for _, d := range p.BuildDefinition.ResolvedDependencies {
		deps[d.Name] = d
	}
	switch {
	case p.BuildDefinition.BuildType != builder.BuildType || p.RunDetails.Builder.ID != builder.BuilderID:
		t.Errorf("build type %q, builder %q", p.BuildDefinition.BuildType, p.RunDetails.Builder.ID)
	case deps["source"].URI != "git+https://git.example/team/app.git@refs/heads/main" || deps["source"].Digest["gitCommit"] != origin.Commit:
		t.Errorf("source %+v: want the repository without its credential, at the commit", deps["source"])
	case p.BuildDefinition.ExternalParameters.Source.URL != "https://git.example/team/app.git":
		t.Errorf("the request's source URL %q keeps its credential", p.BuildDefinition.ExternalParameters.Source.URL)
	case deps["base"].Digest["sha256"] == "" || p.BuildDefinition.ExternalParameters.Spec.Base != baseRef:
		t.Errorf("base %+v, spec base %q", deps["base"], p.BuildDefinition.ExternalParameters.Spec.Base)
	case p.RunDetails.Metadata.InvocationID != "run-1" || p.RunDetails.Metadata.StartedOn.Before(before) || p.RunDetails.Metadata.FinishedOn.Before(p.RunDetails.Metadata.StartedOn):
		t.Errorf("metadata %+v", p.RunDetails.Metadata)
	}
}
