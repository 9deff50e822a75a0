package oci_test

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

func mustHash(t *testing.T, s string) v1.Hash {
	t.Helper()
	h, err := v1.NewHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// layoutImage opens the image with digest d in the layout at dir through
// go-containerregistry, an independent reader.
func layoutImage(t *testing.T, dir, d string) v1.Image {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	img, err := p.Image(mustHash(t, d))
	if err != nil {
		t.Fatal(err)
	}
	return img
}
