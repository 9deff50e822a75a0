package oci_test

import (
	"context"
	"encoding/json"
	"io"
	"testing"

	"github.com/digestline/digestline/pkg/oci"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

func readJSON(t *testing.T, l *oci.Layout, d v1.Descriptor, v any) {
	t.Helper()
	rc, err := l.Open(context.Background(), d.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}
