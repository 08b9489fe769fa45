//go:build !linux

package store

// preallocate is a no-op where fallocate does not exist: the writes
// allocate as they go.
func preallocate(path string, off, n int64) {}

// releasePreallocated has nothing to give back here.
func releasePreallocated(path string) {}
