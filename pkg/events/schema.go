package events

import (
	"bytes"
	"embed"
	"fmt"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The JSON Schemas of every event's data, generated from the Go types by
// `go test ./events -run TestSchemasAreGenerated -update` and checked in so
// that consumers in any language can read the contract.
//
//go:embed schemas/*.json
var schemaFiles embed.FS

// SchemaFile is the path of an event's schema inside the schemas directory.
func SchemaFile(n Name) string { return "schemas/" + string(n) + ".json" }

// Schema returns an event's JSON Schema document.
func Schema(n Name) ([]byte, error) { return schemaFiles.ReadFile(SchemaFile(n)) }

// compiledSchemas compiles every schema once; the result is read-only.
var compiledSchemas = sync.OnceValues(func() (map[Name]*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	out := make(map[Name]*jsonschema.Schema, len(dataTypes))
	for n := range dataTypes {
		raw, err := Schema(n)
		if err != nil {
			return nil, fmt.Errorf("schema of %s: %w", n, err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("schema of %s: %w", n, err)
		}
		url := "digestline:" + SchemaFile(n)
		if err := c.AddResource(url, doc); err != nil {
			return nil, fmt.Errorf("schema of %s: %w", n, err)
		}
		if out[n], err = c.Compile(url); err != nil {
			return nil, fmt.Errorf("compile schema of %s: %w", n, err)
		}
	}
	return out, nil
})

// ValidateData checks an event's JSON data against its schema. The error
// wraps ErrInvalid and names what failed.
func ValidateData(n Name, data []byte) error {
	schemas, err := compiledSchemas()
	if err != nil {
		return err
	}
	sch, ok := schemas[n]
	if !ok {
		return fmt.Errorf("%w: no schema for %q", ErrInvalid, n)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%w: %s data is not JSON: %v", ErrInvalid, n, err)
	}
	if err := sch.Validate(inst); err != nil {
		return fmt.Errorf("%w: %s data: %v", ErrInvalid, n, err)
	}
	return nil
}
