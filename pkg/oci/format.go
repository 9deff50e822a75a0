package oci

import (
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Compression is a layer compression algorithm.
type Compression string

// The layer compressions.
const (
	Gzip         Compression = "gzip"
	Zstd         Compression = "zstd"
	Uncompressed Compression = "none"
)

// defaultGzipLevel is klauspost/compress's level 2: on real layer content it
// compresses a little better than the standard library's default (level 6)
// at several times the speed; see docs/benchmarks.md.
const defaultGzipLevel = 2

// gzipBlockSize fixes how parallel gzip splits its input. It is a constant,
// not derived from the machine, so any number of cores gives the same bytes.
const gzipBlockSize = 1 << 20

// LayerFormat says how layers are compressed and which media types the image
// uses. A layer's digest depends on Compression, Level and Docker — never on
// Jobs, which only sets how many cores compress.
type LayerFormat struct {
	Compression Compression // default gzip
	Level       int         // 0 means the default (gzip 2, zstd 2); gzip 1-9, zstd 1-4
	Jobs        int         // compression goroutines; 0 means one per core but one
	Docker      bool        // Docker v2.2 media types instead of OCI
}

// Validate reports a format that cannot be built.
func (f LayerFormat) Validate() error {
	switch f.compression() {
	case Gzip:
		if f.Level < 0 || f.Level > 9 {
			return fmt.Errorf("gzip level %d: want 1 (fastest) to 9 (smallest)", f.Level)
		}
	case Zstd:
		if f.Docker {
			return fmt.Errorf("zstd layers need OCI media types: Docker v2.2 has no zstd layer type")
		}
		if f.Level < 0 || f.Level > 4 {
			return fmt.Errorf("zstd level %d: want 1 (fastest) to 4 (smallest)", f.Level)
		}
	case Uncompressed:
	default:
		return fmt.Errorf("compression %q: want gzip, zstd or none", f.Compression)
	}
	return nil
}

func (f LayerFormat) compression() Compression {
	if f.Compression == "" {
		return Gzip
	}
	return f.Compression
}

// jobs defaults to one core fewer than there are: reading, tarring and
// hashing the uncompressed stream keep one core busy on their own, and a
// compressor per remaining core keeps the pipeline balanced (on 2 cores, one
// compressor beats two in docs/benchmarks.md).
func (f LayerFormat) jobs() int {
	if f.Jobs > 0 {
		return f.Jobs
	}
	return max(runtime.GOMAXPROCS(0)-1, 1)
}

// LayerMediaType is the media type of a layer in this format.
func (f LayerFormat) LayerMediaType() string {
	switch {
	case f.Docker && f.compression() == Gzip:
		return MediaTypeDockerLayerGzip
	case f.Docker:
		return MediaTypeDockerLayer
	case f.compression() == Gzip:
		return v1.MediaTypeImageLayerGzip
	case f.compression() == Zstd:
		return v1.MediaTypeImageLayerZstd
	}
	return v1.MediaTypeImageLayer
}

// ManifestMediaType is the image manifest's media type in this format.
func (f LayerFormat) ManifestMediaType() string {
	if f.Docker {
		return MediaTypeDockerManifest
	}
	return v1.MediaTypeImageManifest
}

// IndexMediaType is the image index's media type in this format.
func (f LayerFormat) IndexMediaType() string {
	if f.Docker {
		return MediaTypeDockerManifestList
	}
	return v1.MediaTypeImageIndex
}

// ConfigMediaType is the image config's media type in this format.
func (f LayerFormat) ConfigMediaType() string {
	if f.Docker {
		return MediaTypeDockerConfig
	}
	return v1.MediaTypeImageConfig
}

// compressor wraps w in this format's compressor. The gzip header is zero
// (no name, no mtime) so the output depends only on the input.
func (f LayerFormat) compressor(w io.Writer) (io.WriteCloser, error) {
	switch f.compression() {
	case Gzip:
		level := f.Level
		if level == 0 {
			level = defaultGzipLevel
		}
		return newGzipWriter(w, level, f.jobs())
	case Zstd:
		level := zstd.SpeedDefault
		if f.Level > 0 {
			level = zstd.EncoderLevel(f.Level)
		}
		return zstd.NewWriter(w, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(f.jobs()))
	}
	return nopWriteCloser{w}, nil
}

// gzipPools keeps parallel gzip writers for reuse, one pool per level and
// number of jobs (a writer's compressors keep the level they were made
// with). Each writer holds megabytes of block buffers and compressors that
// a new one allocates and zeroes: for the small layers of most builds that
// cost more than compressing them.
var gzipPools sync.Map // gzipKey → *sync.Pool of *pgzip.Writer

type gzipKey struct{ level, jobs int }

// pooledGzip is a parallel gzip writer that goes back to its pool once
// closed; it must not be used after Close.
type pooledGzip struct {
	*pgzip.Writer
	pool *sync.Pool
}

func (z pooledGzip) Close() error {
	err := z.Writer.Close()
	if err == nil {
		z.pool.Put(z.Writer)
	}
	return err
}

// newGzipWriter is a parallel gzip writer to w, reused where one of the same
// level and jobs was closed before. A reset writer writes the same bytes as
// a new one: the output depends only on the input, the level and the block
// size.
func newGzipWriter(w io.Writer, level, jobs int) (io.WriteCloser, error) {
	p, _ := gzipPools.LoadOrStore(gzipKey{level, jobs}, &sync.Pool{})
	pool := p.(*sync.Pool)
	zw, ok := pool.Get().(*pgzip.Writer)
	if ok {
		zw.Reset(w)
	} else {
		var err error
		if zw, err = pgzip.NewWriterLevel(w, level); err != nil {
			return nil, err
		}
	}
	if err := zw.SetConcurrency(gzipBlockSize, jobs); err != nil {
		return nil, err
	}
	return pooledGzip{zw, pool}, nil
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
