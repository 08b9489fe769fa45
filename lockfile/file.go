package lockfile

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ReadImagesLock reads and parses the ImagesLock at path; see ParseImagesLock.
// Files over MaxFileSize are refused before they are read. Errors name path;
// format errors match ErrInvalid, I/O errors wrap the *os.PathError.
func ReadImagesLock(path string) (*ImagesLock, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return ParseImagesLock(path, data)
}

// ReadBundleLock reads and parses the BundleLock at path; see ParseBundleLock.
// Files over MaxFileSize are refused before they are read. Errors name path;
// format errors match ErrInvalid, I/O errors wrap the *os.PathError.
func ReadBundleLock(path string) (*BundleLock, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return ParseBundleLock(path, data)
}

// ReadFile reads the file at path for Kind or a Parse* function, refusing
// files over MaxFileSize: the size is checked before reading, and reading
// stops after MaxFileSize bytes for files whose size is not known in advance.
// The too-large error is a *FieldError matching ErrInvalid.
func ReadFile(path string) ([]byte, error) {
	return readFile(path)
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // *os.PathError names the file
	}
	defer f.Close()
	if info, err := f.Stat(); err == nil && info.Mode().IsRegular() && info.Size() > MaxFileSize {
		return nil, tooLarge(path, info.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read lock file %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, &FieldError{File: path, Err: invalidf("file is larger than %s, the limit for lock files", sizeString(MaxFileSize))}
	}
	return data, nil
}

func tooLarge(file string, size int64) error {
	return &FieldError{File: file, Err: invalidf("file is too large (%s); lock files are limited to %s", sizeString(size), sizeString(MaxFileSize))}
}

// WriteFile writes data to path atomically: it writes a temporary file in
// the same directory, syncs it, sets mode 0644 and renames it over path, so
// readers see either the old file or the new one. On error the temporary file
// is removed and path is left as it was. A symlink at path is replaced, not
// followed. Concurrent calls for the same path are safe; the last rename wins.
func WriteFile(path string, data []byte) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if base == "" {
		return fmt.Errorf("write lock file %q: path names a directory", path)
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write lock file %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write lock file %s: %w", path, err)
	}
	if err = f.Chmod(0o644); err != nil {
		return fmt.Errorf("write lock file %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write lock file %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write lock file %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write lock file %s: %w", path, err)
	}
	// Make the rename durable. Not every platform can sync a directory, and
	// the file is already in place, so a failure here is not reported.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
