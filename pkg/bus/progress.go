package bus

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/digestline/digestline/pkg/events"
	"github.com/nats-io/nats.go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// ProgressFeed publishes a push's upload progress (events.PushProgress)
// on core NATS, outside the stream: see events.ProgressSubject.

// ProgressFeed gathers a push's progress and publishes it at most once per
// interval (and once more when stopped), so watching costs the pusher a few
// small messages a second whatever the blob count.
type ProgressFeed struct {
	nc      *nats.Conn
	subject string

	mu    sync.Mutex
	frame events.PushProgress
	index map[string]int
	dirty bool
}

// NewProgressFeed returns a feed for one push of run runID.
func NewProgressFeed(nc *nats.Conn, runID, target, digest string) *ProgressFeed {
	return &ProgressFeed{nc: nc, subject: events.ProgressSubject(runID), frame: events.PushProgress{Target: target, Digest: digest}, index: map[string]int{}}
}

// Update records that the registry has done bytes of blob (a
// registry.Progress).
func (f *ProgressFeed) Update(blob v1.Descriptor, done int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, ok := f.index[blob.Digest.String()]
	if !ok {
		i = len(f.frame.Blobs)
		f.index[blob.Digest.String()] = i
		f.frame.Blobs = append(f.frame.Blobs, events.BlobProgress{Descriptor: blob})
	}
	f.frame.Blobs[i].Done = done
	f.dirty = true
}

// Run publishes changed frames every interval until ctx ends, then the last
// one.
func (f *ProgressFeed) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			f.publish()
			return
		case <-t.C:
			f.publish()
		}
	}
}

func (f *ProgressFeed) publish() {
	f.mu.Lock()
	if !f.dirty {
		f.mu.Unlock()
		return
	}
	f.dirty = false
	data, err := json.Marshal(f.frame)
	f.mu.Unlock()
	if err == nil {
		_ = f.nc.Publish(f.subject, data) // best effort: a lost frame is redrawn by the next
	}
}
