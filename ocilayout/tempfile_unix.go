//go:build unix

package ocilayout

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive flock(2) on f. With wait it blocks until the
// lock is free; without, it reports false when another open file holds it.
// The lock belongs to f's open file description and ends when f is closed or
// the process dies, so a temporary file whose lock can be taken has no live
// writer.
func lockFile(f *os.File, wait bool) (bool, error) {
	how := syscall.LOCK_EX
	if !wait {
		how |= syscall.LOCK_NB
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	var lerr error
	if err := rc.Control(func(fd uintptr) {
		for {
			lerr = syscall.Flock(int(fd), how)
			if lerr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return false, err
	}
	if lerr == syscall.EWOULDBLOCK {
		return false, nil
	}
	if lerr != nil {
		return false, &os.PathError{Op: "flock", Path: f.Name(), Err: lerr}
	}
	return true, nil
}

// commitTemp renames a locked, synced temporary file into place and then
// closes it, so that its lock is held until it no longer has a temporary
// name and no cleaner can take it for a stale one.
func commitTemp(f *os.File, rename func() error) (renamed bool, err error) {
	if err := rename(); err != nil {
		return false, err
	}
	return true, f.Close()
}
