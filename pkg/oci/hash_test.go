package oci_test

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func mustHash(t *testing.T, s string) v1.Hash {
	t.Helper()
	h, err := v1.NewHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
