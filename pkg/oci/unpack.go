package oci

import (
	"context"
	"fmt"
	"hash"
	"io"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// PickPlatform returns the entry of index for platform (its variant only
// when one is asked for).
func PickPlatform(ctx context.Context, src BlobReader, index v1.Descriptor, want v1.Platform) (v1.Descriptor, error) {
	raw, err := ReadManifest(ctx, src, index)
	if err != nil {
		return v1.Descriptor{}, err
	}
	children, err := Children(index.MediaType, raw)
	if err != nil {
		return v1.Descriptor{}, err
	}
	var have []string
	for _, c := range children {
		if c.Platform == nil {
			continue
		}
		have = append(have, c.Platform.OS+"/"+c.Platform.Architecture)
		if c.Platform.OS == want.OS && c.Platform.Architecture == want.Architecture && (want.Variant == "" || c.Platform.Variant == want.Variant) {
			return c, nil
		}
	}
	return v1.Descriptor{}, fmt.Errorf("no manifest for %s/%s in the index (it has %v)", want.OS, want.Architecture, have)
}

// Unpack applies the layers of the image at root (for platform, when root is
// an index) in order to dir, as a root filesystem: whiteouts delete what
// lower layers wrote and opaque directories hide it, and every entry is
// refused that would land outside dir — ".." or absolute names, symlinks or
// hardlinks pointing out, and writes through a symlink an earlier layer
// planted. Each layer is checked against its digest as it streams. Owners
// are not applied (the unpacking user owns everything). On error, dir holds
// a partial tree and the error names the layer and the entry.
func Unpack(ctx context.Context, src BlobReader, root v1.Descriptor, platform v1.Platform, dir string, lim ExtractLimits) error {
	if IsIndex(root.MediaType) {
		var err error
		if root, err = PickPlatform(ctx, src, root, platform); err != nil {
			return err
		}
	}
	raw, err := ReadManifest(ctx, src, root)
	if err != nil {
		return err
	}
	children, err := Children(root.MediaType, raw)
	if err != nil {
		return err
	}
	if len(children) == 0 {
		return fmt.Errorf("manifest %s has no config", root.Digest)
	}
	x, err := newExtractor(dir, lim)
	if err != nil {
		return err
	}
	defer x.root.Close()
	x.layers = true
	for i, l := range children[1:] {
		if err := x.applyLayer(ctx, src, l); err != nil {
			return fmt.Errorf("layer %d (%s): %w", i+1, l.Digest, err)
		}
	}
	return nil
}

// applyLayer streams one compressed layer through its hash and into the
// tree; a layer that does not hash to its digest is an error.
func (x *extractor) applyLayer(ctx context.Context, src BlobReader, l v1.Descriptor) error {
	rc, err := src.Open(ctx, l.Digest)
	if err != nil {
		return err
	}
	defer rc.Close()
	sum := &hashCount{h: l.Digest.Algorithm().Hash()}
	compressed := io.TeeReader(io.LimitReader(rc, l.Size+1), sum)
	tr, err := decompress(l.MediaType, compressed)
	if err != nil {
		return err
	}
	err = x.apply(tr)
	// The decompressor may read ahead in a goroutine of its own (pgzip):
	// stop it before this one reads the rest of the stream.
	if cerr := tr.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, compressed); err != nil { // the tar's padding, and anything after it
		return err
	}
	if got := digest.NewDigest(l.Digest.Algorithm(), sum.h); sum.n != l.Size || got != l.Digest {
		return fmt.Errorf("the layer is %d bytes hashing to %s, not %d bytes of %s: it was altered", sum.n, got, l.Size, l.Digest)
	}
	return nil
}

// hashCount hashes and counts what is written to it.
type hashCount struct {
	h hash.Hash
	n int64
}

func (w *hashCount) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return w.h.Write(p)
}
