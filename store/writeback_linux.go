//go:build linux && (amd64 || arm64)

package store

import (
	"os"
	"syscall"
)

// syncFileRangeWrite is SYNC_FILE_RANGE_WRITE: start writeback of dirty
// pages in the range, without waiting.
const syncFileRangeWrite = 2

// startWriteback asks the kernel to start writing the n bytes of f at off to
// disk now, without waiting (sync_file_range), so that the sync at commit
// has little left to do. It is a hint; errors are ignored.
func startWriteback(f *os.File, off, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_, _, _ = syscall.Syscall6(syscall.SYS_SYNC_FILE_RANGE, fd, uintptr(off), uintptr(n), syncFileRangeWrite, 0, 0)
	})
}
