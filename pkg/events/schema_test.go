package events

import (
	"encoding/json"
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

// TestNamesAreTheContract keeps Names, which the stream's subjects and a
// run's subjects are made from, equal to the events that have a data type:
// an event missing from Names could not be published at all.
func TestNamesAreTheContract(t *testing.T) {
	names := Names()
	if len(names) != len(dataTypes) {
		t.Fatalf("Names lists %d events, the contract has %d", len(names), len(dataTypes))
	}
	for _, n := range names {
		if _, ok := dataTypes[n]; !ok {
			t.Errorf("%s is in Names but has no data type", n)
		}
	}
}
