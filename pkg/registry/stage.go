package registry

import (
	"errors"
	"fmt"
)

// skipped is returned by a stage function that has nothing to do.
type skipped struct{ reason string }

func (s skipped) Error() string { return s.reason }

func skip(format string, a ...any) error { return skipped{fmt.Sprintf(format, a...)} }

func asSkip(err error) (string, bool) {
	var s skipped
	if errors.As(err, &s) {
		return s.reason, true
	}
	return "", false
}
