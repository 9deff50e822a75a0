package registry

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/registry/transport"
	"github.com/opencontainers/go-digest"
)

// DeleteManifest deletes the manifest d from the repository, and with it
// the tags that point at it (the distribution registry, olareg and most
// others untag what they delete). A manifest that is not there is no
// error: gone is false then. A registry that serves no deletes answers
// with a *failure.Error naming the setting that turns them on.
func (r *Repo) DeleteManifest(ctx context.Context, d digest.Digest) (gone bool, err error) {
	return r.deleteRef(ctx, d.String())
}

// DeleteTag deletes a tag, and nothing else: the manifest it pointed at
// stays until the registry's own garbage collection finds it untagged. A
// tag that is not there is no error: gone is false then.
func (r *Repo) DeleteTag(ctx context.Context, tag string) (gone bool, err error) {
	return r.deleteRef(ctx, tag)
}

// deleteRef deletes manifests/<ref>: a digest or a tag.
func (r *Repo) deleteRef(ctx context.Context, ref string) (gone bool, err error) {
	resp, err := r.do(ctx, http.MethodDelete, r.repoURL("manifests", ref), nil, nil)
	if err != nil {
		return false, err
	}
	defer transport.Drain(resp)
	switch resp.StatusCode {
	case http.StatusAccepted, http.StatusOK, http.StatusNoContent:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	e := transport.Classify(resp, r.name)
	if refusesDeletes(e) {
		e.Class, e.Hint = failure.Conflict, deletesHint(r.name.RegistryStr())
	}
	return false, e
}

// Deletes is what a registry deletes.
type Deletes int

const (
	// DeletesManifests: manifests by digest, with their tags.
	DeletesManifests Deletes = iota + 1
	// DeletesTagsOnly: tags only; a manifest left untagged goes with the
	// registry's own garbage collection.
	DeletesTagsOnly
)

// CheckDeletes asks the registry what it deletes, by deleting a manifest
// that is not there, and then, if it refuses, a tag that is not there:
// nothing is deleted. A registry that deletes neither answers with a
// *failure.Error naming the setting that turns deletes on.
func (r *Repo) CheckDeletes(ctx context.Context) (Deletes, error) {
	_, err := r.DeleteManifest(ctx, digest.FromString("digestline: a manifest no registry holds"))
	if err == nil {
		return DeletesManifests, nil
	}
	if f := failure.As(err); f.Class != failure.Conflict {
		return 0, err
	}
	if _, terr := r.DeleteTag(ctx, "digestline-no-such-tag"); terr != nil {
		return 0, err
	}
	return DeletesTagsOnly, nil
}

// refusesDeletes reports whether e is a registry's "no deletes here": 405
// (the distribution registry with storage.delete.enabled false, olareg
// without deletes), or UNSUPPORTED.
func refusesDeletes(e *failure.Error) bool {
	return e.Status == http.StatusMethodNotAllowed || slices.Contains(e.Codes, "UNSUPPORTED")
}

func deletesHint(registry string) string {
	return fmt.Sprintf("%s does not delete manifests: turn deletes on (the distribution registry: storage.delete.enabled: true, "+
		"or REGISTRY_STORAGE_DELETE_ENABLED=true; Harbor and Quay: a robot account or token with delete rights), then run gc again", registry)
}
