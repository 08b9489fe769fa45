//go:build linux

package ocilayout

import (
	"math"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestRoomFor(t *testing.T) {
	const gib = 1 << 30
	for _, tc := range []struct {
		avail, n int64
		want     bool
	}{
		{gib, 100 << 20, true},
		{gib, gib - preallocSpare, true},
		{gib, gib - preallocSpare + 1, false},
		{gib, math.MaxInt64, false}, // n + spare would wrap
		{preallocSpare - 1, 1, false},
		{gib, 0, false},
	} {
		if got := roomFor(tc.avail, tc.n); got != tc.want {
			t.Errorf("roomFor(%d, %d) = %v, want %v", tc.avail, tc.n, got, tc.want)
		}
	}
}

// preallocate reserves a file's blocks without changing its size, and
// reserves nothing for a size no disk has.
func TestPreallocate(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	blocks := func() int64 {
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != 0 {
			t.Errorf("size %d, want 0 (unchanged)", fi.Size())
		}
		return fi.Sys().(*syscall.Stat_t).Blocks * 512
	}
	preallocate(f, 1<<60)
	if got := blocks(); got != 0 {
		t.Errorf("%d bytes reserved for 1 EiB, want none", got)
	}
	const n = 8 << 20
	preallocate(f, n)
	if got := blocks(); got < n {
		if err := syscall.Fallocate(int(f.Fd()), 1, 0, n); err != nil {
			t.Skipf("SKIP: the filesystem of %s cannot preallocate: %v", f.Name(), err)
		}
		t.Errorf("%d bytes reserved, want at least %d", got, n)
	}
}
