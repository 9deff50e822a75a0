package events

import v1 "github.com/opencontainers/image-spec/specs-go/v1"

// Upload progress is not part of the durable contract: it is published on
// core NATS, outside the DIGESTLINE stream, so a watcher sees bars move and
// nothing is stored. A lost message only skips a frame; push.stage events
// still say what happened.

// ProgressSubject is where a run's upload progress goes.
func ProgressSubject(runID string) string { return "digestline-progress." + runID }

// PushProgress is one frame: every blob the upload stage sends, and how many
// of its bytes the registry has.
type PushProgress struct {
	Target string         `json:"target"`
	Digest string         `json:"digest"`
	Blobs  []BlobProgress `json:"blobs"`
}

// BlobProgress is one blob's part of a frame.
type BlobProgress struct {
	Descriptor v1.Descriptor `json:"descriptor"`
	Done       int64         `json:"done"`
}
