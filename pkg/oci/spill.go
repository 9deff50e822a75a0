package oci

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// spillLimit is how much of a layer is kept in memory before it goes to a
// temporary file.
const spillLimit = 4 << 20

// spill holds what is written to it in memory, and in a temporary file
// once it outgrows spillLimit. Most layers a pipeline builds are small:
// a temporary file made and removed for each cost more than writing the
// layer (an inode each; on ext4, one searched for past those deleted
// lately).
type spill struct {
	mem  bytes.Buffer
	file *os.File
}

func (s *spill) Write(p []byte) (int, error) {
	if s.file == nil && s.mem.Len()+len(p) > spillLimit {
		f, err := os.CreateTemp("", "digestline-layer-*")
		if err != nil {
			return 0, fmt.Errorf("layer temp file: %w", err)
		}
		s.file = f
		if _, err := f.Write(s.mem.Bytes()); err != nil {
			return 0, err
		}
		s.mem = bytes.Buffer{}
	}
	if s.file != nil {
		return s.file.Write(p)
	}
	return s.mem.Write(p)
}

// reader reads back all that was written.
func (s *spill) reader() (io.Reader, error) {
	if s.file == nil {
		return bytes.NewReader(s.mem.Bytes()), nil
	}
	if _, err := s.file.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return s.file, nil
}

// close removes the temporary file, if there is one.
func (s *spill) close() {
	if s.file != nil {
		_ = s.file.Close()
		_ = os.Remove(s.file.Name())
	}
}
