//go:build !linux

package ocilayout

import "os"

// preallocate is a no-op where fallocate does not exist: the writes
// allocate as they go.
func preallocate(f *os.File, n int64) {}
