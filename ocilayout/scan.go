package ocilayout

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// tarEntry is one entry of a scanned tar.
type tarEntry struct {
	name   string // cleaned: no leading "./", no trailing "/"
	offset int64  // of the first byte of the body
	size   int64
	dir    bool
}

// tarIndex is the result of one pass over a tar's headers.
type tarIndex struct {
	entries map[string]tarEntry
}

// file returns the regular-file entry called name.
func (ti *tarIndex) file(name string) (tarEntry, bool) {
	e, ok := ti.entries[name]
	return e, ok && !e.dir
}

// errNotTar is returned (wrapped) by scanTar when the first header is invalid.
var errNotTar = errors.New("not a tar archive")

// scanTar reads every header of the tar in f (size bytes) once, recording
// where each entry's body is, and refuses unsafe or duplicate entries and
// truncated files. Bodies are skipped with Seek, not read. A tar must end
// with (at least the first block of) its end-of-archive marker: a tar cut
// exactly between two entries is otherwise indistinguishable from a shorter
// one.
func scanTar(ctx context.Context, f *os.File, size int64) (*tarIndex, error) {
	sr := io.NewSectionReader(f, 0, size)
	tr := tar.NewReader(sr)
	ti := &tarIndex{entries: make(map[string]tarEntry)}
	var last string // name of the last entry, for messages
	var lastEnd int64
	for n := 0; ; n++ {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			pos, _ := sr.Seek(0, io.SeekCurrent)
			switch {
			case size == 0:
				return nil, fmt.Errorf("%w: the file is empty", errNotTar)
			case pos < lastEnd+blockSize:
				return nil, fmt.Errorf("%w: the file ends after entry %q, without the end-of-archive marker", ErrTruncated, last)
			}
			return ti, nil
		}
		if err != nil && !(errors.Is(err, tar.ErrInsecurePath) && hdr != nil) {
			switch {
			case errors.Is(err, io.ErrUnexpectedEOF):
				if n == 0 {
					return nil, fmt.Errorf("%w: %w: the file ends inside the first header", errNotTar, ErrTruncated)
				}
				return nil, fmt.Errorf("%w: the file ends after entry %q, inside the next header or the padding", ErrTruncated, last)
			case errors.Is(err, tar.ErrHeader):
				if n == 0 {
					return nil, fmt.Errorf("%w: %w", errNotTar, err)
				}
				return nil, fmt.Errorf("%w after entry %q: %w", ErrCorruptTar, last, err)
			}
			return nil, fmt.Errorf("read tar header after entry %q: %w", last, err)
		}
		off, err := sr.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, err
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name, err := cleanEntryName(hdr.Name)
		if err != nil {
			return nil, fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		last = hdr.Name
		var dir bool
		switch hdr.Typeflag {
		case tar.TypeReg:
			for k := range hdr.PAXRecords {
				if strings.HasPrefix(k, "GNU.sparse.") {
					return nil, fmt.Errorf("entry %q: %w: sparse files are not supported", hdr.Name, ErrUnsafeEntry)
				}
			}
		case tar.TypeDir:
			dir = true
		case tar.TypeSymlink, tar.TypeLink:
			return nil, fmt.Errorf("entry %q: %w: a link (to %q); a layout holds only regular files and directories", hdr.Name, ErrUnsafeEntry, hdr.Linkname)
		default:
			return nil, fmt.Errorf("entry %q: %w: type %q; a layout holds only regular files and directories", hdr.Name, ErrUnsafeEntry, hdr.Typeflag)
		}
		if hdr.Size < 0 {
			return nil, fmt.Errorf("entry %q: %w: negative size", hdr.Name, ErrCorruptTar)
		}
		if !dir && off+hdr.Size > size {
			return nil, fmt.Errorf("entry %q: %w: its header says %d bytes, the file ends %d bytes into them", hdr.Name, ErrTruncated, hdr.Size, size-off)
		}
		if name == "." {
			continue
		}
		if old, ok := ti.entries[name]; ok && !(old.dir && dir) {
			return nil, fmt.Errorf("entry %q: %w", hdr.Name, ErrDuplicateEntry)
		}
		ti.entries[name] = tarEntry{name: name, offset: off, size: hdr.Size, dir: dir}
		if !dir {
			lastEnd = off + (hdr.Size+blockSize-1)/blockSize*blockSize
		} else {
			lastEnd = off
		}
	}
}

// cleanEntryName returns the canonical form of a tar entry name, refusing
// absolute names and ".." elements.
func cleanEntryName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%w: empty name", ErrUnsafeEntry)
	}
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("%w: absolute name", ErrUnsafeEntry)
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return "", fmt.Errorf("%w: name escapes the layout (\"..\")", ErrUnsafeEntry)
		}
	}
	if strings.ContainsRune(name, '\\') {
		return "", fmt.Errorf("%w: backslash in name", ErrUnsafeEntry)
	}
	return path.Clean(name), nil
}

// readEntry reads a small entry's body into memory.
func readEntry(f *os.File, e tarEntry, limit int64) ([]byte, error) {
	if e.size > limit {
		return nil, fmt.Errorf("entry %q: %d bytes, more than the %d this reader accepts", e.name, e.size, limit)
	}
	b := make([]byte, e.size)
	if _, err := f.ReadAt(b, e.offset); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("entry %q: %w", e.name, ErrTruncated)
		}
		return nil, fmt.Errorf("entry %q: %w", e.name, err)
	}
	return b, nil
}

// openTarFile opens path for random access and checks it is a regular file.
func openTarFile(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("%s: not a regular file (a tar is read with random access)", path)
	}
	return f, fi.Size(), nil
}

// isNotTar reports whether scanTar failed on the very first header.
func isNotTar(err error) bool {
	return errors.Is(err, errNotTar)
}

// openAndScan opens the tar at path and indexes its entries in one pass over
// the headers. what names the kind of file in open errors ("layout tar");
// notTar is the sentinel wrapped when the file is not a tar at all. On error
// the file is closed.
func openAndScan(ctx context.Context, path, what string, notTar error) (*os.File, *tarIndex, error) {
	f, size, err := openTarFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", what, err)
	}
	ti, err := scanTar(ctx, f, size)
	if err != nil {
		f.Close()
		if isNotTar(err) {
			return nil, nil, fmt.Errorf("%s: %w: %w", path, notTar, err)
		}
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, ti, nil
}
