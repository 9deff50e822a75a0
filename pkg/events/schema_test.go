package events

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"reflect"
	"testing"

	"github.com/invopop/jsonschema"
	"github.com/opencontainers/go-digest"
)

var update = flag.Bool("update", false, "rewrite schemas/*.json from the Go types")

// generateSchema derives an event's schema from its Go data type.
func generateSchema(t *testing.T, n Name) []byte {
	t.Helper()
	r := &jsonschema.Reflector{
		AllowAdditionalProperties: true, // newer producers may add optional fields within v1
		Mapper: func(t reflect.Type) *jsonschema.Schema {
			if t == reflect.TypeFor[digest.Digest]() {
				return &jsonschema.Schema{Type: "string", Pattern: `^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$`}
			}
			return nil
		},
	}
	s := r.Reflect(dataTypes[n])
	s.ID = jsonschema.ID("https://digestline.dev/schemas/" + string(n) + ".json")
	s.Title = n.Type()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// TestSchemasAreGenerated keeps the checked-in schemas equal to what the Go
// types say, so the contract documents and the code cannot drift apart.
func TestSchemasAreGenerated(t *testing.T) {
	for n := range dataTypes {
		want := generateSchema(t, n)
		if *update {
			if err := os.WriteFile(SchemaFile(n), want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := Schema(n)
		if err != nil {
			t.Fatalf("%s: %v (run: go test ./events -run TestSchemasAreGenerated -update)", n, err)
		}
		if string(got) != string(want) {
			t.Errorf("%s is stale: run go test ./events -run TestSchemasAreGenerated -update", SchemaFile(n))
		}
	}
}

func TestContractSubject(t *testing.T) {
	for subject, want := range map[string]bool{
		PushStage.Subject("run-1"):             true,
		Promoted.Subject("2baec8be-3556-4b2a"): true,
		"digestline.push.stage":                false, // before run ids were in subjects
		"digestline.build.started.run-1":       false,
		"digestline.promoted.run.1":            false,
		"digestline.promoted.*":                false,
		"dlq.digestline.promoted.run-1":        false,
	} {
		if got := IsContractSubject(subject); got != want {
			t.Errorf("IsContractSubject(%q) = %v, want %v", subject, got, want)
		}
	}
}

// Data found valid is remembered for its event type only: the same bytes
// may be valid for one type and not for another, the second time too.
func TestValidDataIsRememberedPerType(t *testing.T) {
	data, err := json.Marshal(Drift{Target: "registry.example/app:1", Tag: "1", Expected: "sha256:aa", Found: "sha256:bb"})
	if err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		if err := ValidateData(DriftDetected, data); err != nil {
			t.Fatalf("round %d: a drift's data as drift.detected: %v", round, err)
		}
		if err := ValidateData(BuildRequested, data); !errors.Is(err, ErrInvalid) {
			t.Fatalf("round %d: a drift's data as build.requested: %v, want ErrInvalid", round, err)
		}
	}
}
