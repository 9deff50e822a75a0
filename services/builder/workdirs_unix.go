//go:build unix

package builder

import (
	"errors"
	"os"
	"syscall"
)

// canLock: flock(2) locks belong to the open file, and end with the
// process that holds them.
const canLock = true

// tryLock locks f for this open file, unless another holds it.
func tryLock(f *os.File) (bool, error) {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}
