package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	cenats "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/digestline/digestline/cmd/digestline/internal/e2etest"
	"github.com/digestline/digestline/cmd/digestline/internal/ship"
	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/google/go-containerregistry/pkg/name"
	slsa1 "github.com/in-toto/attestation/go/predicates/provenance/v1"
	vsa1 "github.com/in-toto/attestation/go/predicates/vsa/v1"
	ita1 "github.com/in-toto/attestation/go/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/santhosh-tekuri/jsonschema/v6"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx"
	"github.com/spdx/tools-golang/spdxlib"
	"google.golang.org/protobuf/encoding/protojson"
)

// TestEvidenceMeetsTheStandards: what a signed ship of a Go binary
// attaches, read back from the registry, validates with each standard's
// own published validator — SPDX 2.3 with its JSON schema and the SPDX
// project's Go tools, CycloneDX 1.5 with its JSON schema and CycloneDX's Go
// library, the in-toto statements, SLSA provenance v1 and the SLSA
// verification summary v1 with the in-toto attestation Go bindings and
// every field the SLSA specification marks required, the signature and
// both attestations with cosign itself — and every event on the bus reads
// as a valid CloudEvent through the CloudEvents SDK's NATS binding. The
// SBOMs hold what the help says: every file, named as SPDX recommends
// (./bin/app), with its SHA-256, and the packages, the binary's own main
// module with its version among them.
func TestEvidenceMeetsTheStandards(t *testing.T) {
	own := t.TempDir()
	s, _ := e2etest.StartStack(t, e2etest.WithSigningKey(t, own))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	res, err := ship.Ship(ctx, s.Bus, ship.Request{Dir: goModuleBinary(t, "example.com/acme/greeter", "v1.4.2"), Target: s.RegistryAddr + "/acme/greeter:1",
		Spec: events.BuildSpec{Entrypoint: []string{"/bin/app"}, SBOM: true}}, &out)
	if err != nil {
		t.Fatalf("ship: %v\n%s", err, out.String())
	}
	ref := s.RegistryAddr + "/acme/greeter@" + res.Promotion.Digest
	attached := attachedContent(t, ref)

	spdxDoc, cdxDoc := attached[oci.MediaTypeSPDX], attached[oci.MediaTypeCycloneDX]
	validateSchema(t, "spdx-2.3.schema.json", "http://spdx.org/rdf/terms/2.3", spdxDoc)
	validateSchema(t, "bom-1.5.schema.json", "http://cyclonedx.org/schema/bom-1.5.schema.json", cdxDoc)
	checkSPDX(t, spdxDoc)
	checkCycloneDX(t, cdxDoc)

	statements := 0
	for _, payload := range attachedStatements(t, attached[sign.MediaTypeBundle+"#statements"]) {
		var st ita1.Statement
		if err := protojson.Unmarshal(payload, &st); err != nil {
			t.Fatalf("the in-toto bindings do not read the statement: %v\n%s", err, payload)
		}
		if err := st.Validate(); err != nil {
			t.Errorf("in-toto statement: %v", err)
		}
		predicate, err := st.GetPredicate().MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		switch st.GetPredicateType() {
		case sign.PredicateSLSAProvenance:
			checkProvenance(t, predicate)
		case sign.PredicateSLSAVSA:
			checkVSA(t, predicate)
		}
		statements++
	}
	if statements != 2 {
		t.Errorf("%d statements attached, want the provenance and dev's verification summary", statements)
	}

	// cosign's own verification of the signature and both attestations.
	keys := filepath.Dir(filepath.Join(own, "digestline.pub"))
	flags := []string{"--key", "digestline.pub", "--trusted-root", e2etest.EmptyTrustedRoot(t), "--insecure-ignore-tlog=true", "--allow-http-registry", "--allow-insecure-registry"}
	for _, args := range [][]string{
		append([]string{"verify", "--experimental-oci11"}, flags...),
		append([]string{"verify-attestation", "--new-bundle-format", "--type", "slsaprovenance1"}, flags...),
		append([]string{"verify-attestation", "--new-bundle-format", "--type", sign.PredicateSLSAVSA}, flags...),
	} {
		if out, err := e2etest.Cosign(t, keys, append(args, ref)...); err != nil || !strings.Contains(out, "verified against the specified public key") {
			t.Errorf("cosign %s: %v\n%s", strings.Join(args[:4], " "), err, out)
		}
	}

	checkCloudEvents(t, s.Conn, res.RunID)
}

// goModuleBinary builds a Go program of module mod, at a commit tagged
// version, as its own CI would (go build stamps the version from the
// tag), into a tree holding it as bin/app.
func goModuleBinary(t *testing.T, mod, version string) string {
	t.Helper()
	src, tree := t.TempDir(), t.TempDir()
	for file, content := range map[string]string{
		"go.mod":  "module " + mod + "\n\ngo 1.24\n",
		"main.go": "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello from greeter\") }\n",
	} {
		if err := os.WriteFile(filepath.Join(src, file), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e2etest.Git(t, src, "init", "-q")
	e2etest.Git(t, src, "add", ".")
	e2etest.Git(t, src, "-c", "user.name=ci", "-c", "user.email=ci@example.com", "commit", "-q", "-m", "greeter")
	e2etest.Git(t, src, "tag", version)
	build := exec.Command("go", "build", "-buildvcs=true", "-o", filepath.Join(tree, "bin", "app"), ".")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return tree
}

// attachedContent reads what is attached to ref, by artifact type: the
// one file of each SBOM, and the bundles' contents joined.
func attachedContent(t *testing.T, ref string) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	d, err := name.NewDigest(ref)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := registry.New().Open(ctx, d.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	refs, err := repo.Referrers(ctx, digest.Digest(d.DigestStr()))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, r := range refs {
		body, _, err := repo.GetManifest(ctx, r.Digest.String())
		if err != nil {
			t.Fatal(err)
		}
		var m v1.Manifest
		if err := json.Unmarshal(body, &m); err != nil || len(m.Layers) != 1 {
			t.Fatalf("referrer %s: %v %+v", r.Digest, err, m)
		}
		content, err := repo.ReadBlob(ctx, m.Layers[0])
		if err != nil {
			t.Fatal(err)
		}
		if r.ArtifactType == sign.MediaTypeBundle {
			out[sign.MediaTypeBundle+"#statements"] = append(append(out[sign.MediaTypeBundle+"#statements"], content...), '\n')
			continue
		}
		out[r.ArtifactType] = content
	}
	for _, want := range []string{oci.MediaTypeSPDX, oci.MediaTypeCycloneDX, sign.MediaTypeBundle + "#statements"} {
		if len(out[want]) == 0 {
			t.Fatalf("nothing of type %s attached to %s: %v", want, ref, refs)
		}
	}
	return out
}

// attachedStatements are the statements the DSSE envelopes of the
// bundles (one JSON document per line) carry, as signed.
func attachedStatements(t *testing.T, bundles []byte) [][]byte {
	t.Helper()
	var out [][]byte
	dec := json.NewDecoder(bytes.NewReader(bundles))
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			t.Fatal(err)
		}
		env, err := sign.EnvelopeOf(raw)
		if err != nil {
			t.Fatal(err)
		}
		payload, err := base64.StdEncoding.DecodeString(env.Payload)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, payload)
	}
	return out
}

// validateSchema validates doc against the standard's published JSON
// schema (testdata/standards; CycloneDX's refers to its SPDX license list
// and JSF schemas beside it).
func validateSchema(t *testing.T, file, id string, doc []byte) {
	t.Helper()
	c := jsonschema.NewCompiler()
	for f, url := range map[string]string{file: id, "spdx.schema.json": "http://cyclonedx.org/schema/spdx.schema.json",
		"jsf-0.82.schema.json": "http://cyclonedx.org/schema/jsf-0.82.schema.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", "standards", f))
		if err != nil {
			t.Fatal(err)
		}
		schema, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.AddResource(url, schema); err != nil {
			t.Fatal(err)
		}
	}
	sch, err := c.Compile(id)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(inst); err != nil {
		t.Errorf("%s: %v", file, err)
	}
}

// checkSPDX reads the SPDX SBOM with the SPDX project's Go tools, validates
// it with them, and checks it lists the files as SPDX names them and the
// binary's main module with its version.
func checkSPDX(t *testing.T, content []byte) {
	t.Helper()
	doc, err := spdxjson.Read(bytes.NewReader(content))
	if err != nil {
		t.Fatalf("tools-golang does not read the SPDX SBOM: %v", err)
	}
	if err := spdxlib.ValidateDocument(doc); err != nil {
		t.Errorf("tools-golang: %v", err)
	}
	if doc.SPDXVersion != "SPDX-2.3" || len(doc.Files) != 1 || doc.Files[0].FileName != "./bin/app" || len(doc.Files[0].Checksums) != 1 {
		t.Errorf("SPDX %s, files %+v: want ./bin/app with its SHA-256", doc.SPDXVersion, doc.Files)
	}
	if !slices.ContainsFunc(doc.Packages, func(p *spdx.Package) bool {
		return p.PackageName == "example.com/acme/greeter" && p.PackageVersion == "v1.4.2"
	}) {
		t.Errorf("SPDX lists no example.com/acme/greeter v1.4.2 (the binary's main module): %v", packageNames(doc))
	}
}

func packageNames(doc *spdx.Document) []string {
	var out []string
	for _, p := range doc.Packages {
		out = append(out, p.PackageName+" "+p.PackageVersion)
	}
	return out
}

// checkCycloneDX reads the CycloneDX SBOM with CycloneDX's Go library, and
// checks it lists the file with its hash and the main module with its
// version and purl.
func checkCycloneDX(t *testing.T, content []byte) {
	t.Helper()
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(content), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		t.Fatalf("cyclonedx-go does not read the CycloneDX SBOM: %v", err)
	}
	if bom.SpecVersion != cdx.SpecVersion1_5 || bom.Components == nil {
		t.Fatalf("CycloneDX %v, components %v", bom.SpecVersion, bom.Components)
	}
	var file, main bool
	for _, c := range *bom.Components {
		file = file || c.Type == cdx.ComponentTypeFile && c.Name == "./bin/app" && c.Hashes != nil && (*c.Hashes)[0].Algorithm == cdx.HashAlgoSHA256
		main = main || c.Type == cdx.ComponentTypeLibrary && c.Name == "example.com/acme/greeter" && c.Version == "v1.4.2" &&
			c.PackageURL == "pkg:golang/example.com/acme/greeter@v1.4.2"
	}
	if !file || !main {
		t.Errorf("CycloneDX components: the file ./bin/app with its SHA-256 %v, the main module v1.4.2 %v: %+v", file, main, *bom.Components)
	}
}

// checkProvenance reads SLSA provenance v1 with the in-toto bindings and
// checks every field the SLSA specification requires.
func checkProvenance(t *testing.T, predicate []byte) {
	t.Helper()
	var p slsa1.Provenance
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(predicate, &p); err != nil {
		t.Fatalf("the SLSA provenance bindings do not read it: %v\n%s", err, predicate)
	}
	if err := p.Validate(); err != nil {
		t.Errorf("SLSA provenance: %v", err)
	}
	// Required by the spec: buildDefinition.{buildType, externalParameters},
	// runDetails.builder.id.
	bd, rd := p.GetBuildDefinition(), p.GetRunDetails()
	if bd.GetBuildType() == "" || bd.GetExternalParameters() == nil || rd.GetBuilder().GetId() == "" {
		t.Errorf("SLSA provenance lacks a required field: %s", predicate)
	}
	for _, d := range bd.GetResolvedDependencies() {
		if err := d.Validate(); err != nil {
			t.Errorf("resolved dependency %v: %v", d, err)
		}
	}
}

// checkVSA reads the SLSA verification summary with the in-toto bindings
// and checks every field the SLSA specification requires.
func checkVSA(t *testing.T, predicate []byte) {
	t.Helper()
	var v vsa1.VerificationSummary
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(predicate, &v); err != nil {
		t.Fatalf("the VSA bindings do not read it: %v\n%s", err, predicate)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(predicate, &fields); err != nil {
		t.Fatal(err)
	}
	// Required by the spec: verifier.id, resourceUri, policy (with a uri),
	// verificationResult (PASSED or FAILED), verifiedLevels (present).
	if v.GetVerifier().GetId() == "" || v.GetResourceUri() == "" || v.GetPolicy().GetUri() == "" ||
		(v.GetVerificationResult() != "PASSED" && v.GetVerificationResult() != "FAILED") || fields["verifiedLevels"] == nil {
		t.Errorf("the verification summary lacks a required field: %s", predicate)
	}
	for _, a := range v.GetInputAttestations() {
		if len(a.GetDigest()) == 0 {
			t.Errorf("an input attestation without its digest: %v", a)
		}
	}
}

// checkCloudEvents reads every event on the bus as it is stored (the
// ship's run's among them), through the CloudEvents SDK's NATS binding,
// and validates it.
func checkCloudEvents(t *testing.T, nc *nats.Conn, runID string) {
	t.Helper()
	ctx := context.Background()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.SubjectAll}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := int(info.NumPending)
	if n < 10 {
		t.Fatalf("%d events on the bus", n)
	}
	batch, err := c.Fetch(n, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	seen, ofRun := 0, 0
	for m := range batch.Messages() {
		msg := &nats.Msg{Subject: m.Subject(), Data: m.Data(), Header: m.Headers()}
		ev, err := binding.ToEvent(ctx, cenats.NewMessage(msg))
		if err != nil {
			t.Errorf("%s: the CloudEvents NATS binding does not read it: %v", m.Subject(), err)
			continue
		}
		if err := ev.Validate(); err != nil {
			t.Errorf("%s: %v", m.Subject(), err)
		}
		if ev.SpecVersion() != "1.0" || !strings.HasPrefix(ev.Type(), "dev.digestline.") || events.RunID(*ev) == "" {
			t.Errorf("%s: %s %s, run %q", m.Subject(), ev.SpecVersion(), ev.Type(), events.RunID(*ev))
		}
		if events.RunID(*ev) == runID {
			ofRun++
		}
		seen++
	}
	if seen != n || ofRun < 10 {
		t.Errorf("read %d of the bus's %d events, %d of them the ship's run's", seen, n, ofRun)
	}
}
