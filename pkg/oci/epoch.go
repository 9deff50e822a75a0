package oci

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

// SourceDateEpoch returns the time SOURCE_DATE_EPOCH names (seconds since the
// Unix epoch), or the zero time when it is unset.
func SourceDateEpoch() (time.Time, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return time.Time{}, nil
	}
	secs, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since the Unix epoch", v)
	}
	return time.Unix(secs, 0).UTC(), nil
}
