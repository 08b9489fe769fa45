package ocilayout

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// WriteDir writes an OCI image layout holding blobs and index into dir,
// creating it when needed or adding to the layout already there. Each blob
// is copied from src (file to file when src gives an *os.File) into a
// temporary file, synced and renamed into blobs/<alg>/<hex>; a blob already
// present with the right size is kept (not hashed; Dir.Verify checks). Its
// length must equal the descriptor's size (ErrSizeMismatch otherwise).
//
// index.json is written last, atomically. When dir already has one, its
// entries are kept except those whose ref name one of index's entries uses,
// index's entries follow them, and its annotations are merged (index's win).
// An existing oci-layout of another version fails with ErrNotLayout.
// Temporary files are locked while written; unlocked ones that a killed run
// left behind (".NAME.tmp-*" next to oci-layout, index.json and the blobs)
// are removed first. On failure, what WriteDir added is removed again (see
// DirBuilder). WriteDir is CreateDir followed by Commit; it must not run
// concurrently on the same dir.
func WriteDir(ctx context.Context, dir string, blobs []ocispec.Descriptor, index ocispec.Index, src BlobOpener, opts WriteOptions) error {
	b, err := CreateDir(ctx, dir, blobs, index, opts)
	if err != nil {
		return err
	}
	return b.Commit(ctx, src)
}

// writeDirBlob copies one blob into blobs/<alg>/<hex> unless present, and
// reports whether it wrote it.
func writeDirBlob(ctx context.Context, root *os.Root, d ocispec.Descriptor, src BlobOpener) (wrote bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	name := blobPath(d.Digest)
	if fi, err := root.Stat(name); err == nil && fi.Mode().IsRegular() && fi.Size() == d.Size {
		return false, nil
	}
	// Something else there (a file of the wrong size, a link the root does
	// not follow) is replaced, but not counted as written: a builder that
	// cleans up after a failure must not remove what it found.
	_, lerr := root.Lstat(name)
	fresh := errors.Is(lerr, fs.ErrNotExist)
	if err := root.MkdirAll(path.Dir(name), dirMode); err != nil {
		return false, fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	rc, err := src.OpenBlob(ctx, d)
	if err != nil {
		return false, fmt.Errorf("open blob %s: %w", d.Digest, err)
	}
	defer rc.Close()
	tmp, f, err := createLockedTemp(root, name)
	if err != nil {
		return false, fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			root.Remove(tmp)
		}
	}()
	preallocate(f, d.Size)
	var copied int64
	for copied < d.Size {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		n, err := io.Copy(f, &io.LimitedReader{R: rc, N: min(copyChunk, d.Size-copied)})
		startWriteback(f, copied, n)
		copied += n
		if err != nil {
			return false, fmt.Errorf("blob %s: copy: %w", d.Digest, err)
		}
		if n == 0 {
			return false, fmt.Errorf("blob %s: %w: source ended after %d bytes, descriptor says %d", d.Digest, ErrSizeMismatch, copied, d.Size)
		}
	}
	if err := ensureEOF(rc, d); err != nil {
		return false, err
	}
	if err := f.Sync(); err != nil {
		return false, fmt.Errorf("blob %s: sync: %w", d.Digest, err)
	}
	if _, err := commitTemp(f, func() error { return root.Rename(tmp, name) }); err != nil {
		return false, fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	return fresh, nil
}

// createRootTemp creates a new file next to name inside root.
func createRootTemp(root *os.Root, name string) (string, *os.File, error) {
	var rnd [8]byte
	for range 10 {
		rand.Read(rnd[:])
		tmp := path.Join(path.Dir(name), "."+path.Base(name)+".tmp-"+hex.EncodeToString(rnd[:]))
		f, err := root.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, fileMode)
		if err == nil {
			return tmp, f, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", nil, err
		}
	}
	return "", nil, fmt.Errorf("create temporary file for %s: %w", name, fs.ErrExist)
}

// writeRootFileAtomic writes data to name inside root via a synced temporary
// file and a rename.
func writeRootFileAtomic(root *os.Root, name string, data []byte) (err error) {
	tmp, f, err := createLockedTemp(root, name)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			root.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", name, err)
	}
	renamed, err := commitTemp(f, func() error { return root.Rename(tmp, name) })
	if err != nil && !renamed {
		return fmt.Errorf("write %s: %w", name, err)
	}
	// Renamed into place after its sync: written, whatever closing the
	// temporary file's descriptor then says.
	return nil
}

// mergeIndex merges index into the index.json already in root, if any.
func mergeIndex(root *os.Root, index ocispec.Index) (ocispec.Index, error) {
	if index.SchemaVersion == 0 {
		index.SchemaVersion = 2
	}
	if index.MediaType == "" {
		index.MediaType = ocispec.MediaTypeImageIndex
	}
	b, err := readRootFile(root, ocispec.ImageIndexFile, maxIndexFile)
	if errors.Is(err, fs.ErrNotExist) {
		return index, nil
	}
	if err != nil {
		return ocispec.Index{}, err
	}
	old, err := parseIndex(b)
	if err != nil {
		return ocispec.Index{}, err
	}
	names := make(map[string]bool)
	for _, m := range index.Manifests {
		if n, ok := m.Annotations[AnnotationRefName]; ok {
			names[n] = true
		}
	}
	out := index
	out.Manifests = nil
	for _, m := range old.Manifests {
		if n, ok := m.Annotations[AnnotationRefName]; ok && names[n] {
			continue
		}
		out.Manifests = append(out.Manifests, m)
	}
	out.Manifests = append(out.Manifests, index.Manifests...)
	if len(old.Annotations) > 0 {
		out.Annotations = make(map[string]string, len(old.Annotations)+len(index.Annotations))
		for k, v := range old.Annotations {
			out.Annotations[k] = v
		}
		for k, v := range index.Annotations {
			out.Annotations[k] = v
		}
	}
	return out, nil
}
