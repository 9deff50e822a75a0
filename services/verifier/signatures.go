package verifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// verifySignatures proves the image's signatures with the trusted keys:
// every cosign signature listed as a referrer of root must be one of the
// keys' over root's digest, and at least one must be there. Each is read
// by digest and its payload hashed against its descriptor before its
// signature is checked.
func verifySignatures(ctx context.Context, repo *registry.Repo, root digest.Digest, keys []sign.Verifier, rep *Report) error {
	listed, err := repo.Referrers(ctx, root)
	if err != nil {
		return registryError(err, "manifest → referrers")
	}
	valid := 0
	for _, d := range listed {
		if d.ArtifactType != sign.ArtifactTypeCosignSignature {
			continue
		}
		path := fmt.Sprintf("manifest → referrer %s %s", d.ArtifactType, d.Digest)
		keyIDs, err := verifySignature(ctx, repo, d.Digest, root, keys)
		if err != nil {
			e := registryError(err, path)
			e.Path = path
			return e
		}
		for _, id := range keyIDs {
			rep.Checks = append(rep.Checks, fmt.Sprintf("[VERIFY] signature %s by key %s: valid", d.Digest, id))
		}
		valid += len(keyIDs)
	}
	if valid == 0 {
		return &failure.Error{Class: failure.NotFound, Path: "manifest → referrers", Err: fmt.Errorf("%s has no signature", root),
			Hint: "sign it: give the builder a key (DIGESTLINE_SIGNING_KEY), or cosign sign --key … --registry-referrers-mode=oci-1-1"}
	}
	return nil
}

// verifySignature checks every simple signing layer of the signature
// manifest sig, and returns the ids of the keys that made them.
func verifySignature(ctx context.Context, repo *registry.Repo, sig, root digest.Digest, keys []sign.Verifier) ([]string, error) {
	body, _, err := repo.GetManifest(ctx, sig.String()) // hashed against sig
	if err != nil {
		return nil, err
	}
	var m v1.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, &failure.Error{Class: failure.Schema, Err: fmt.Errorf("signature manifest: %w", err), Hint: "the referrer is not an image manifest"}
	}
	var ids []string
	for _, l := range m.Layers {
		if l.MediaType != sign.MediaTypeSimpleSigning {
			continue
		}
		payload, err := readSmallBlob(ctx, repo, l)
		if err != nil {
			return nil, err
		}
		id, err := sign.VerifyImageSignature(payload, l.Annotations[sign.AnnotationCosignSignature], root, keys)
		switch {
		case errors.Is(err, sign.ErrWrongSubject):
			return nil, &failure.Error{Class: failure.Integrity, Err: err,
				Hint: "a signature of another image is attached to this one: delete the referrer, and find who attached it"}
		case err != nil:
			return nil, &failure.Error{Class: failure.Integrity, Err: err,
				Hint: "the signature is not a trusted key's over this image: it was tampered with, or made with a key not in DIGESTLINE_TRUSTED_KEYS (or verify --key)"}
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil, &failure.Error{Class: failure.Schema, Err: errors.New("the signature manifest holds no simple signing layer"),
			Hint: "the referrer says it is a cosign signature but holds none: delete it"}
	}
	return ids, nil
}

// readSmallBlob reads a blob of at most a manifest's size and checks it
// against its descriptor.
func readSmallBlob(ctx context.Context, repo *registry.Repo, d v1.Descriptor) ([]byte, error) {
	if d.Size > oci.MaxManifestSize {
		return nil, &failure.Error{Class: failure.Schema, Err: fmt.Errorf("signature payload %s is %d bytes", d.Digest, d.Size), Hint: "a signature payload is small: this is not one"}
	}
	rc, err := repo.Open(ctx, d.Digest)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, d.Size+1))
	if err != nil {
		return nil, &failure.Error{Class: failure.Transport, Err: fmt.Errorf("read %s: %w", d.Digest, err), Hint: "the connection to the registry broke: retry"}
	}
	if int64(len(b)) != d.Size || digest.FromBytes(b) != d.Digest {
		return nil, &failure.Error{Class: failure.Integrity, Err: fmt.Errorf("blob %s does not match its descriptor", d.Digest),
			Hint: "the registry serves other bytes for the signature's payload: it is corrupted or substituted"}
	}
	return b, nil
}
