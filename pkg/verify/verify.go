package verify

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/digestline/digestline/pkg/evidence"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// Report is a successful verification.
type Report struct {
	Digest      digest.Digest
	Descriptors int   // manifests, configs and layers checked
	BytesHashed int64 // every byte pulled and hashed
	// Checks are the [VERIFY] lines, in order.
	Checks []string
	// Graph is what the registry serves, in push order.
	Graph oci.Graph
	// Subject is the manifest the root names as its subject (an attached
	// artifact's), if it names one.
	Subject digest.Digest
}

// Options tune a verification.
type Options struct {
	// Jobs bounds the blobs of one graph hashed at once (default 1): an
	// image's, or one of its referrers', which are proven beside it.
	Jobs int
	// Keys, when given, are the trusted keys: the image must carry a
	// signature by one of them, and every cosign signature and attestation
	// attached to it must be one of theirs about its digest.
	Keys []sign.Verifier
	// Also are keys whose signatures and attestations are proven, but
	// whose signatures do not count as the one required: the pipeline's
	// own, beside the keys an admitted image must be signed by.
	Also []sign.Verifier
	// Provenance, when set with Keys, requires a SLSA provenance among
	// the attestations the keys signed, from its builder and source.
	Provenance *Provenance
	// Proven, when set, remembers the evidence proven, so that verifying
	// the same digest again reads only new referrers' signatures.
	Proven *evidence.Cache
}

// OrDefaults is o with what a service proves with when it is told
// nothing: 4 blobs at a time, and a memory of the evidence proven of its
// own.
func (o Options) OrDefaults() Options {
	o.Jobs = cmp.Or(o.Jobs, 4)
	if o.Proven == nil {
		o.Proven = evidence.NewCache(0)
	}
	return o
}

// Image pulls ref by digest from its registry and proves every byte: each
// manifest hashes to the digest it is served under, each blob streams through
// a hasher and matches its descriptor's digest and size, and — when want is
// given — the whole graph equals the one that was built, and its referrers
// are listed. With trusted keys, its signatures and attestations are proven too. Blobs are
// hashed in parallel (opts.Jobs at a time), and the evidence proven while
// they are; memory does not grow with their size.
func Image(ctx context.Context, c *registry.Client, ref name.Digest, want *oci.Graph, opts Options) (Report, error) {
	return prove(ctx, c, ref, want, opts, nil)
}

// prove is Image, where hashed holds what blobs hashed to before it began
// (an Ahead's): those are not pulled again.
func prove(ctx context.Context, c *registry.Client, ref name.Digest, want *oci.Graph, opts Options, hashed map[digest.Digest]error) (Report, error) {
	repo, err := c.Open(ctx, ref.Context(), false)
	if err != nil {
		return Report{}, registryError(err, "")
	}
	// The bytes' proof and the evidence's read the same referrers: once.
	repo = repo.Shared()
	if len(opts.Keys) == 0 {
		return image(ctx, repo, ref, want, opts.Jobs, hashed)
	}
	var (
		rep      Report
		checks   []string
		proofErr error
		wg       sync.WaitGroup
	)
	wg.Go(func() { rep, err = image(ctx, repo, ref, want, opts.Jobs, hashed) })
	wg.Go(func() { checks, proofErr = verifyEvidence(ctx, repo, ref, opts) })
	wg.Wait()
	if err = cmp.Or(err, proofErr); err != nil {
		return Report{}, err // the bytes' failure first: evidence read from bad bytes fails too
	}
	rep.Checks = append(rep.Checks, checks...)
	return rep, nil
}

// image proves ref's bytes, and those of the referrers want has, in repo.
// The referrers' proofs need nothing from the image's: both go at once.
func image(ctx context.Context, repo *registry.Repo, ref name.Digest, want *oci.Graph, jobs int, hashed map[digest.Digest]error) (Report, error) {
	var (
		refs    referrersProof
		refsErr error
		wg      sync.WaitGroup
	)
	refsCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if want != nil && len(want.Referrers) > 0 {
		wg.Go(func() { refs, refsErr = verifyReferrers(refsCtx, repo, ref, *want, jobs, hashed) })
	}
	rep, err := graph(ctx, repo, ref, want, jobs, hashed)
	if err != nil {
		cancel() // the image's failure is the answer: its referrers' proofs need not finish
	}
	wg.Wait()
	if err = cmp.Or(err, refsErr); err != nil {
		return Report{}, err // the image's failure first: it is what the run is about
	}
	rep.Descriptors += refs.descriptors
	rep.BytesHashed += refs.bytes
	rep.Checks = append(rep.Checks, refs.checks...)
	return rep, nil
}

// graph proves the bytes of ref's own graph (its manifests and blobs, not
// its referrers) and, when want is given, that they are the build's.
func graph(ctx context.Context, repo *registry.Repo, ref name.Digest, want *oci.Graph, jobs int, hashed map[digest.Digest]error) (Report, error) {
	root, err := digest.Parse(ref.DigestStr())
	if err != nil {
		return Report{}, &failure.Error{Class: failure.Schema, Err: err, Hint: "verify takes REPOSITORY@sha256:<hex>"}
	}
	v := &verification{repo: repo, hashed: hashed}
	rootDesc := v1.Descriptor{Digest: root}
	if want != nil {
		rootDesc = want.Root
		// The build says which blobs the manifests name: they are hashed
		// while the manifests are read, not after them (a round trip less
		// to a registry far away). The manifests must then name exactly
		// those, or compare says what differs.
		hashCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		hashes := newBlobHashes(hashCtx, func() (*registry.Repo, error) { return repo, nil }, jobs, hashed)
		for _, b := range want.Blobs() {
			hashes.start(b)
		}
		err := v.manifest(ctx, rootDesc, "")
		if err != nil {
			cancel() // the manifest is wrong: its blobs need no proof
		}
		v.hashed = hashes.wait()
		if err != nil {
			return Report{}, err
		}
	} else if err := v.manifest(ctx, rootDesc, ""); err != nil {
		return Report{}, err
	}
	if err := v.hashBlobs(ctx, max(jobs, 1)); err != nil {
		return Report{}, err
	}
	g := oci.Graph{Root: v.root, Descriptors: append(v.blobs, v.manifests...)}
	if want != nil {
		if err := compare(*want, g); err != nil {
			return Report{}, err
		}
	}
	rep := Report{Digest: root, Descriptors: len(g.Descriptors), BytesHashed: v.bytes.Load(), Graph: g, Subject: v.subject}
	rep.Checks = []string{
		"[VERIFY] digest match",
		fmt.Sprintf("[VERIFY] manifest descriptor count: %d", rep.Descriptors),
		fmt.Sprintf("[VERIFY] bytes hashed: %d", rep.BytesHashed),
	}
	if want != nil {
		rep.Checks = append(rep.Checks, "[VERIFY] graph matches the build")
	}
	return rep, nil
}

// referrersProof is what proving an image's referrers counted and said.
type referrersProof struct {
	descriptors int
	bytes       int64
	checks      []string
}

// verifyReferrers proves each artifact the graph has attached (an SBOM, a
// signature, a signature of the SBOM) byte for byte, concurrently, and that
// the registry lists it as a referrer of its subject.
func verifyReferrers(ctx context.Context, repo *registry.Repo, ref name.Digest, want oci.Graph, jobs int, hashed map[digest.Digest]error) (referrersProof, error) {
	subs := make([]Report, len(want.Referrers))
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(max(jobs, 1))
	for i, r := range want.Referrers {
		eg.Go(func() error {
			path := fmt.Sprintf("manifest → referrer %s", r.Root.ArtifactType)
			sub, err := image(ectx, repo, ref.Context().Digest(r.Root.Digest.String()), &r, jobs, hashed)
			if err != nil {
				verr := registryError(err, path)
				verr.Path = path
				return verr
			}
			subs[i] = sub
			if tag := registry.TaggedAs(r); tag != "" {
				return taggedAs(ectx, repo, tag, r.Root.Digest, path)
			}
			if sub.Subject == "" {
				return &failure.Error{Class: failure.Schema, Path: path, Err: fmt.Errorf("referrer %s names no subject", r.Root.Digest),
					Hint: "an attached artifact's manifest must name its subject"}
			}
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return referrersProof{}, err
	}
	var proof referrersProof
	listed := map[digest.Digest][]v1.Descriptor{} // by subject, read once each
	for i, r := range want.Referrers {
		sub, path := subs[i], fmt.Sprintf("manifest → referrer %s", r.Root.ArtifactType)
		proof.descriptors += sub.Descriptors
		proof.bytes += sub.BytesHashed
		if tag := registry.TaggedAs(r); tag != "" {
			proof.checks = append(proof.checks, fmt.Sprintf("[VERIFY] %s %s: digest match", tag, r.Root.Digest))
			continue
		}
		if _, ok := listed[sub.Subject]; !ok {
			var err error
			if listed[sub.Subject], err = repo.Referrers(ctx, sub.Subject); err != nil {
				return referrersProof{}, registryError(err, "manifest → referrers")
			}
		}
		if !slices.ContainsFunc(listed[sub.Subject], func(d v1.Descriptor) bool { return d.Digest == r.Root.Digest }) {
			return referrersProof{}, &failure.Error{Class: failure.NotFound, Path: path, Err: fmt.Errorf("%s is in the registry but not listed as a referrer of %s", r.Root.Digest, sub.Subject),
				Hint: "the registry lost the referrer link: push again (digestline updates the referrers API or the fallback tag)"}
		}
		proof.checks = append(proof.checks, fmt.Sprintf("[VERIFY] referrer %s %s: digest match", r.Root.ArtifactType, r.Root.Digest))
	}
	return proof, nil
}

// taggedAs checks that an artifact cosign keeps under a tag is there.
func taggedAs(ctx context.Context, repo *registry.Repo, tag string, want digest.Digest, path string) error {
	d, found, err := repo.HeadManifest(ctx, tag)
	if err != nil {
		return registryError(err, path)
	}
	if !found || d.Digest != want {
		got := "nothing"
		if found {
			got = d.Digest.String()
		}
		return &failure.Error{Class: failure.NotFound, Path: path, Err: fmt.Errorf("tag %s points at %s, not at %s", tag, got, want),
			Hint: "the registry lost cosign's tag: push again (digestline copies it with the image)"}
	}
	return nil
}

type verification struct {
	repo      *registry.Repo
	root      v1.Descriptor
	subject   digest.Digest   // the root's subject, if it names one
	manifests []v1.Descriptor // children first
	blobs     []v1.Descriptor
	paths     []string // of blobs
	seen      map[digest.Digest]bool
	bytes     atomic.Int64
	hashed    map[digest.Digest]error // blobs hashed before (an Ahead's): not pulled again
}

// manifest fetches and checks one manifest, then its children.
func (v *verification) manifest(ctx context.Context, d v1.Descriptor, path string) error {
	b, got, err := v.repo.GetManifest(ctx, d.Digest.String())
	if err != nil {
		return registryError(err, cmp.Or(path, "manifest"))
	}
	v.bytes.Add(int64(len(b)))
	if d.MediaType == "" { // the root, when no build graph is given
		d.MediaType, d.Size = got.MediaType, got.Size
	}
	if path == "" { // the root: paths read "index → linux/arm64 → layer 3"
		path = "manifest"
		if oci.IsIndex(d.MediaType) {
			path = "index"
		}
	}
	if !oci.IsManifest(got.MediaType) || got.MediaType != d.MediaType {
		return &failure.Error{Class: failure.Schema, Path: path, Err: fmt.Errorf("served with media type %q, want %q", got.MediaType, d.MediaType),
			Hint: "the registry serves this manifest under another media type: check it supports OCI manifests, or that nothing rewrote it"}
	}
	if got.Size != d.Size {
		return &failure.Error{Class: failure.Integrity, Path: path, Err: fmt.Errorf("manifest is %d bytes, descriptor says %d", got.Size, d.Size),
			Hint: "the manifest does not match its descriptor: the content was altered"}
	}
	if v.root.Digest == "" {
		v.root, v.seen = d, map[digest.Digest]bool{}
		var m struct {
			Subject *v1.Descriptor `json:"subject"`
		}
		if json.Unmarshal(b, &m) == nil && m.Subject != nil {
			v.subject = m.Subject.Digest
		}
	}
	children, err := oci.Children(d.MediaType, b)
	if err != nil {
		return &failure.Error{Class: failure.Schema, Path: path, Err: err, Hint: "the manifest is not valid JSON of its media type"}
	}
	for i, c := range children {
		if v.seen[c.Digest] {
			continue
		}
		v.seen[c.Digest] = true
		cpath := childPath(path, d.MediaType, c, i)
		if oci.IsManifest(c.MediaType) {
			if err := v.manifest(ctx, c, cpath); err != nil {
				return err
			}
			continue
		}
		v.blobs, v.paths = append(v.blobs, c), append(v.paths, cpath)
	}
	v.manifests = append(v.manifests, d)
	return nil
}

func childPath(parent, mediaType string, c v1.Descriptor, i int) string {
	switch {
	case oci.IsIndex(mediaType) && c.Platform != nil:
		return fmt.Sprintf("%s → %s/%s", parent, c.Platform.OS, c.Platform.Architecture)
	case oci.IsIndex(mediaType):
		return fmt.Sprintf("%s → manifest %d", parent, i)
	case i == 0:
		return parent + " → config"
	}
	return fmt.Sprintf("%s → layer %d", parent, i)
}

// hashBlobs streams every blob through a hasher, in parallel, and collects
// every mismatch rather than stopping at the first.
func (v *verification) hashBlobs(ctx context.Context, jobs int) error {
	var (
		mu         sync.Mutex
		mismatches []failure.Mismatch
		first      *failure.Error
	)
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(jobs)
	for i, d := range v.blobs {
		eg.Go(func() error {
			err, done := v.hashed[d.Digest]
			if done && err == nil {
				v.bytes.Add(d.Size)
				return nil
			}
			if !done || !settled(err) {
				var n int64
				n, err = hashBlob(ectx, v.repo, d)
				v.bytes.Add(n)
			}
			if err == nil {
				return nil
			}
			verr := registryError(err, v.paths[i])
			if verr.Class != failure.Integrity && verr.Class != failure.NotFound {
				return verr // the registry failed: stop
			}
			mu.Lock()
			defer mu.Unlock()
			mismatches = append(mismatches, failure.Mismatch{Path: verr.Path, Digest: d.Digest.String(), Class: string(verr.Class), Expected: d.Digest.String(), Found: verr.Err.Error()})
			if first == nil {
				first = verr
			}
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return err
	}
	if first != nil {
		first.Mismatches = mismatches
		return first
	}
	return nil
}

// hashBlob pulls one blob and hashes it against its descriptor; it returns
// the bytes it read.
func hashBlob(ctx context.Context, repo *registry.Repo, d v1.Descriptor) (int64, error) {
	h := d.Digest.Algorithm().Hash()
	n, err := readInto(ctx, repo, d, h)
	if err != nil {
		return n, err
	}
	if n != d.Size {
		return n, &failure.Error{Class: failure.Integrity, Err: fmt.Errorf("blob %s is %d bytes, descriptor says %d", d.Digest, n, d.Size),
			Hint: "the registry serves a blob of the wrong size: it is truncated or substituted"}
	}
	if got := digest.NewDigest(d.Digest.Algorithm(), h); got != d.Digest {
		return n, &failure.Error{Class: failure.Integrity, Err: fmt.Errorf("blob %s hashes to %s", d.Digest, got),
			Hint: "the registry serves corrupted or substituted content for this digest: delete the blob from the registry and push again"}
	}
	return n, nil
}

// readInto writes the blob d describes into h, and one byte past its size
// if the registry serves more, so a longer blob is caught, not truncated.
// A small blob is read whole (evidence read through the same Shared repo
// shares it); a big one streams.
func readInto(ctx context.Context, repo *registry.Repo, d v1.Descriptor, h io.Writer) (int64, error) {
	if d.Size <= registry.SmallBlob {
		b, err := repo.BlobBytes(ctx, d)
		if err != nil {
			return 0, err
		}
		n, _ := h.Write(b)
		return int64(n), nil
	}
	rc, err := repo.Open(ctx, d.Digest)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	n, err := io.CopyBuffer(h, io.LimitReader(rc, d.Size+1), *buf)
	if err != nil {
		return n, &failure.Error{Class: failure.Transport, Err: fmt.Errorf("read blob %s: %w", d.Digest, err), Hint: "the connection to the registry broke mid-blob: retry"}
	}
	return n, nil
}

// settled says whether a blob's failure is its content's (it is wrong, or
// not there), not the moment's: hashing it again would say the same.
func settled(err error) bool {
	c := failure.As(err).Class
	return c == failure.Integrity || c == failure.NotFound
}

// copyBuffers are the reads of hashBlob: large reads take a blob off the
// socket in few system calls (io.Copy's 32 KiB would take 32 per MiB).
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// compare checks that the registry serves exactly the graph that was built.
func compare(want, got oci.Graph) error {
	if want.Root.Digest != got.Root.Digest {
		return &failure.Error{Class: failure.Integrity, Path: "manifest", Err: fmt.Errorf("root is %s, the build made %s", got.Root.Digest, want.Root.Digest)}
	}
	var mismatches []failure.Mismatch
	for _, d := range got.Descriptors {
		w, ok := want.Find(d.Digest)
		switch {
		case !ok:
			mismatches = append(mismatches, failure.Mismatch{Digest: d.Digest.String(), Class: string(failure.Integrity), Found: "not in the build graph"})
		case w.Size != d.Size || w.MediaType != d.MediaType:
			mismatches = append(mismatches, failure.Mismatch{Digest: d.Digest.String(), Class: string(failure.Schema),
				Expected: fmt.Sprintf("%s %d bytes", w.MediaType, w.Size), Found: fmt.Sprintf("%s %d bytes", d.MediaType, d.Size)})
		}
	}
	if len(mismatches) > 0 || len(got.Descriptors) != len(want.Descriptors) {
		return &failure.Error{Class: failure.Integrity, Path: "manifest", Mismatches: mismatches,
			Err:  fmt.Errorf("the registry serves %d descriptors, the build made %d (%d differ)", len(got.Descriptors), len(want.Descriptors), len(mismatches)),
			Hint: "what the registry serves is not what was built: push again and find what altered it"}
	}
	return nil
}

// Tag proves that tag still points at want: a tag moved since the push
// (or deleted) is drift, a conflict error naming both digests.
func Tag(ctx context.Context, c *registry.Client, tag name.Tag, want digest.Digest) error {
	repo, err := c.Open(ctx, tag.Context(), false)
	if err != nil {
		return registryError(err, "tag "+tag.TagStr())
	}
	found, ok, err := repo.HeadManifest(ctx, tag.TagStr())
	if err != nil {
		return registryError(err, "tag "+tag.TagStr())
	}
	if ok && found.Digest == want {
		return nil
	}
	got := "nothing"
	if ok {
		got = found.Digest.String()
	}
	return &failure.Error{Class: failure.Conflict, Path: "tag " + tag.TagStr(),
		Mismatches: []failure.Mismatch{{Path: "tag " + tag.TagStr(), Class: string(failure.Conflict), Expected: want.String(), Found: got}},
		Err:        fmt.Errorf("tag %s points at %s, not at the pushed %s", tag.TagStr(), got, want),
		Hint:       "someone moved the tag after the push: find out who, then ship again or put the tag back"}
}

// registryError is err as a failure at path in the graph (where it has
// no path of its own yet). It is a copy, free to change: the error may be
// shared (a shared read's, or the cause a cancelled context hands every
// request in flight).
func registryError(err error, path string) *failure.Error {
	e := *failure.As(err)
	if e.Path == "" {
		e.Path = path
	}
	return &e
}
