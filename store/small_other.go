//go:build !linux

package store

// writeAnonymous is not available here: the caller writes a small blob
// through a named temporary file.
func writeAnonymous(dir, target string, data []byte) error { return errNoAnonymous }
