package registry

import (
	"context"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// A Proof proves what a push wrote, where it wrote it (VerifyBeforeTag).
type Proof interface {
	// Arrived tells the proof of a blob the destination now holds —
	// uploaded, mounted, or found there — as the push goes on, so that it
	// may start proving it while the rest is copied. It must not block.
	Arrived(b v1.Descriptor)
	// Prove proves everything the push wrote and returns what it proved,
	// in a few words (the verify stage's detail).
	Prove(ctx context.Context) (string, error)
}

// ProofFunc is a Proof that starts nothing early: prove does it all.
type ProofFunc func(ctx context.Context) (string, error)

// Arrived does nothing: the proof starts at the verify stage.
func (ProofFunc) Arrived(v1.Descriptor) {}

// Prove calls f.
func (f ProofFunc) Prove(ctx context.Context) (string, error) { return f(ctx) }

// arrived tells the push's proof, if it has one, that the destination
// holds b.
func (p *pushRun) arrived(b v1.Descriptor) {
	if p.opts.prove != nil {
		p.opts.prove.Arrived(b)
	}
}
