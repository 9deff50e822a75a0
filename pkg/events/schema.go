package events

import (
	"bytes"
	"crypto/sha256"
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
	key := validKey{n, sha256.Sum256(data)}
	if valid.has(key) {
		return nil
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%w: %s data is not JSON: %v", ErrInvalid, n, err)
	}
	if err := sch.Validate(inst); err != nil {
		return fmt.Errorf("%w: %s data: %v", ErrInvalid, n, err)
	}
	valid.add(key)
	return nil
}

// valid remembers the data found valid lately, by its SHA-256: an event
// is checked once per process, however many of its handlers read it (in
// `digestline dev` the publisher, each service and the CLI following the
// run are one process). A check costs far more than the hash.
var valid = validSet{seen: map[validKey]struct{}{}}

type validKey struct {
	name Name
	sum  [sha256.Size]byte
}

// validSet is a set of at most validSetMax keys, emptied when full.
type validSet struct {
	mu   sync.Mutex
	seen map[validKey]struct{}
}

const validSetMax = 4096

func (s *validSet) has(k validKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.seen[k]
	return ok
}

func (s *validSet) add(k validKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.seen) >= validSetMax {
		clear(s.seen)
	}
	s.seen[k] = struct{}{}
}
