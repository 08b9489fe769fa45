//go:build linux

package ocilayout

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing the n bytes of f at off to
// disk now, without waiting (sync_file_range with SYNC_FILE_RANGE_WRITE):
// the disk then works while the copy goes on, and the fsync at the end of a
// write has less left to wait for. It is a hint; errors are ignored (the
// final fsync reports any).
func startWriteback(f *os.File, off, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
	})
}
