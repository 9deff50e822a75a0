package verify_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/digestline/digestline/pkg/failure"
	"github.com/digestline/digestline/pkg/oci"
	"github.com/digestline/digestline/pkg/registry"
	"github.com/digestline/digestline/pkg/registry/registrytest"
	"github.com/digestline/digestline/pkg/sign"
	"github.com/digestline/digestline/pkg/sign/signtest"
	"github.com/digestline/digestline/pkg/verify"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestAheadProvesEachBlobAsItArrives: a push proven with an Ahead has each
// blob it writes — the image's and its signature's — hashed at the
// destination as it arrives, and the verify stage proves the rest (the
// manifests, the referrers' listing, the signature) before the tag moves.
// A destination that serves other bytes than it was sent fails the proof,
// and the tag does not move.
func TestAheadProvesEachBlobAsItArrives(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	signer, trusted := signtest.Key(t)
	host, corrupt := registrytest.CorruptingProxy(t, registrytest.Memory(t, true))
	c := client()
	push := func(content string) (oci.Graph, string, error) {
		t.Helper()
		g, l := registrytest.Image(t, content)
		sig, err := sign.SignImage(ctx, signer, host+"/team/app", g.Root, time.Time{}, l)
		if err != nil {
			t.Fatal(err)
		}
		g.Referrers = append(g.Referrers, sig)
		ref, _ := name.NewTag(host + "/team/app:prod")
		proof := verify.NewAhead(ctx, c, ref.Context().Digest(g.Root.Digest.String()), g, verify.Options{Jobs: 2, Keys: []sign.Verifier{trusted}})
		defer proof.Close()
		var detail string
		_, err = c.Push(ctx, ref, g, l, func(_ context.Context, r events.StageReport) {
			if r.Stage == events.StageVerify {
				detail = r.Detail
			}
		}, registry.VerifyBeforeTag(proof))
		if err == nil && !strings.Contains(strings.Join(proof.Report.Checks, "\n"), "by key "+trusted.KeyID()+": valid") {
			t.Errorf("the proof's checks hold no valid signature:\n%s", strings.Join(proof.Report.Checks, "\n"))
		}
		return g, detail, err
	}

	g, detail, err := push("proven ahead")
	if err != nil {
		t.Fatal(err)
	}
	blobs := len(g.Blobs()) + len(g.Referrers[0].Blobs())
	if want := fmt.Sprintf("(%d blobs as they arrived)", blobs); !strings.Contains(detail, want) {
		t.Fatalf("verify stage: %q, want %q", detail, want)
	}

	corrupt.Store(true)
	_, _, err = push("corrupted on arrival")
	var e *failure.Error
	if !errors.As(err, &e) || e.Class != failure.Integrity || e.Stage != events.StageVerify {
		t.Fatalf("a destination serving other bytes: %v, want integrity at the verify stage", err)
	}
	corrupt.Store(false)
	tag, _ := name.NewTag(host + "/team/app:prod")
	if d, err := remote.Head(tag); err != nil || d.Digest.String() != g.Root.Digest.String() {
		t.Fatalf("the tag moved onto what failed its proof: %v %v", d, err)
	}
}
