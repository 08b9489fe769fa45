//go:build linux

package store

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

// Linux constants the syscall package does not export.
const (
	// oTmpfile is O_TMPFILE: __O_TMPFILE | O_DIRECTORY, the same on every
	// Linux port of Go.
	oTmpfile        = 0x400000 | syscall.O_DIRECTORY
	atFDCWD         = -0x64 // AT_FDCWD
	atSymlinkFollow = 0x400 // AT_SYMLINK_FOLLOW
)

// writeAnonymous writes data to a new, unnamed, read-only file in dir
// (O_TMPFILE) and then links it at target, a path in dir (not synced: see
// writeSmall). A failure or a killed process leaves nothing behind: the
// unnamed file goes away with its descriptor. Compared with a named
// temporary file renamed into place it saves a directory entry created and
// removed, a chmod and a cross-directory rename. It fails with an error
// wrapping errNoAnonymous when the kernel or the file system cannot do it
// (no O_TMPFILE, no /proc), or errTargetExists when target exists; the
// caller then writes through a named temporary file.
func writeAnonymous(dir, target string, data []byte) error {
	// Read-only from the start (the descriptor may still write), as
	// committed blobs are; the umask applies, as it does to containerd's.
	fd, err := syscall.Open(dir, oTmpfile|syscall.O_WRONLY|syscall.O_CLOEXEC, 0o444)
	for errors.Is(err, syscall.EINTR) {
		fd, err = syscall.Open(dir, oTmpfile|syscall.O_WRONLY|syscall.O_CLOEXEC, 0o444)
	}
	if err != nil {
		if errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.EISDIR) || errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("%w: %w", errNoAnonymous, err)
		}
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	f := os.NewFile(uintptr(fd), dir)
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return err
	}
	// Linking the descriptor itself (AT_EMPTY_PATH) needs a capability;
	// its /proc path does not.
	err = linkFollow("/proc/self/fd/"+strconv.Itoa(fd), target)
	switch {
	case errors.Is(err, syscall.EEXIST):
		return fmt.Errorf("%w: %w", errTargetExists, err)
	case errors.Is(err, syscall.ENOENT) && !missing(dir):
		return fmt.Errorf("%w: %w", errNoAnonymous, err) // no /proc
	case err != nil:
		return &os.LinkError{Op: "link", Old: dir + " (unnamed file)", New: target, Err: err}
	}
	return nil
}

// linkFollow is linkat(AT_FDCWD, oldpath, AT_FDCWD, newpath,
// AT_SYMLINK_FOLLOW), which the syscall package does not offer.
func linkFollow(oldpath, newpath string) error {
	p0, err := syscall.BytePtrFromString(oldpath)
	if err != nil {
		return err
	}
	p1, err := syscall.BytePtrFromString(newpath)
	if err != nil {
		return err
	}
	cwd := atFDCWD
	for {
		_, _, e := syscall.Syscall6(syscall.SYS_LINKAT, uintptr(cwd), uintptr(unsafe.Pointer(p0)),
			uintptr(cwd), uintptr(unsafe.Pointer(p1)), atSymlinkFollow, 0)
		switch e {
		case 0:
			return nil
		case syscall.EINTR:
			continue
		}
		return e
	}
}

// missing reports whether dir does not exist (any more).
func missing(dir string) bool {
	_, err := os.Stat(dir)
	return errors.Is(err, os.ErrNotExist)
}
