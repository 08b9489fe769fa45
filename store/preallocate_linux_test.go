//go:build linux

package store

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// allocated is the disk space the file at path holds.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}

// preallocate reserves the blocks of a blob without changing the file's
// size, refuses a size the filesystem cannot take, and
// releasePreallocated gives the reservation back.
func TestPreallocate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	const n = 8 << 20
	preallocate(path, 0, n)
	if got := allocated(t, path); got < n {
		f, _ := os.OpenFile(path, os.O_WRONLY, 0)
		err := syscall.Fallocate(int(f.Fd()), 1, 0, n)
		f.Close()
		if err != nil {
			t.Skipf("SKIP: the filesystem of %s cannot preallocate: %v", path, err)
		}
		t.Fatalf("%d bytes allocated after preallocate, want at least %d", got, n)
	}
	if fi, _ := os.Stat(path); fi.Size() != 4096 {
		t.Errorf("size %d after preallocate, want 4096 (unchanged)", fi.Size())
	}
	releasePreallocated(path)
	if got := allocated(t, path); got >= n {
		t.Errorf("%d bytes allocated after releasePreallocated, want about 4096", got)
	}
	preallocate(path, 0, 1<<60) // more than any disk: a lying descriptor
	if got := allocated(t, path); got >= n {
		t.Errorf("%d bytes allocated after preallocating 1 EiB, want nothing reserved", got)
	}
}
