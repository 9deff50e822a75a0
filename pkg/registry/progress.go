package registry

import (
	"io"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Progress is told how far each blob's upload has got: done is how many of
// blob.Size bytes the registry has. It is first called with done 0 for every
// blob the upload stage is about to send (so a view knows the whole amount
// up front), then as bytes go out; done starts over, lower, when a failed
// monolithic upload is retried. Calls come from the upload goroutines, so
// Progress must be safe for concurrent use.
type Progress func(blob v1.Descriptor, done int64)

// progressReader reports each read of one blob's bytes.
type progressReader struct {
	r    io.Reader
	blob v1.Descriptor
	done int64
	fn   Progress
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.done += int64(n)
		p.fn(p.blob, p.done)
	}
	return n, err
}
