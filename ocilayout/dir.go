package ocilayout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
)

// Dir reads an OCI image layout directory. Files are opened through an
// os.Root, so symbolic links cannot lead outside the directory. It is an
// oras.ReadOnlyTarget.
//
// Its methods are safe for concurrent use, except Close, which must not run
// concurrently with the others. index.json is read once, by OpenDir.
type Dir struct {
	dir   string
	root  *os.Root
	index ocispec.Index
	roots []Root
	refs  referrerIndex // built by the first Referrers call
}

var _ oras.ReadOnlyTarget = (*Dir)(nil)

// OpenDir opens the OCI image layout directory dir: it reads oci-layout and
// index.json (ErrNotLayout, ErrMalformedIndex) and checks every root listed
// in index.json is present with its size (ErrMissingBlob, ErrSizeMismatch).
func OpenDir(ctx context.Context, dir string) (*Dir, error) {
	return openDir(ctx, dir)
}

func openDir(ctx context.Context, dir string) (_ *Dir, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open layout directory: %w", err)
	}
	defer func() {
		if err != nil {
			root.Close()
		}
	}()
	b, err := readRootFile(root, ocispec.ImageLayoutFile, maxLayoutFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w: no %s file", dir, ErrNotLayout, ocispec.ImageLayoutFile)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	if err := checkLayoutFile(b); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	b, err = readRootFile(root, ocispec.ImageIndexFile, maxIndexFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w: no %s file", dir, ErrNotLayout, ocispec.ImageIndexFile)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	d := &Dir{dir: dir, root: root}
	if d.index, err = parseIndex(b); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ocispec.ImageIndexFile), err)
	}
	if d.roots, err = RootsOf(d.index); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ocispec.ImageIndexFile), err)
	}
	for _, m := range d.index.Manifests {
		fi, err := root.Stat(blobPath(m.Digest))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: index.json lists root %q: %w", dir, m.Annotations[AnnotationRefName], missingBlob(m.Digest, ""))
		}
		if err != nil {
			return nil, fmt.Errorf("%s: root %s: %w", dir, m.Digest, err)
		}
		if fi.Size() != m.Size {
			return nil, fmt.Errorf("%s: root %s listed in index.json: %w: index.json says %d bytes, %s holds %d", dir, m.Digest, ErrSizeMismatch, m.Size, blobPath(m.Digest), fi.Size())
		}
	}
	return d, nil
}

// Path returns the directory the layout was opened from.
func (d *Dir) Path() string { return d.dir }

// Index returns the parsed index.json. The caller must not modify it.
func (d *Dir) Index() ocispec.Index { return d.index }

// Roots returns index.json's entries read with RootFromDescriptor, in order.
func (d *Dir) Roots() []Root { return d.roots }

// Fetch opens the blob's file. The reader checks size and digest as it
// streams: at the end of the blob it returns an error matching
// ErrDigestMismatch (or ErrSizeMismatch) instead of io.EOF when they do not
// match. A missing blob gives ErrMissingBlob (and errdef.ErrNotFound); a
// file whose size differs from desc's gives ErrSizeMismatch.
func (d *Dir) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("blob %q: %w: %w", desc.Digest, ErrInvalidDescriptor, err)
	}
	name := blobPath(desc.Digest)
	f, err := d.root.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, missingBlob(desc.Digest, " in "+d.dir)
	}
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("blob %s (%s): %w: not a regular file", desc.Digest, name, ErrUnsafeEntry)
	}
	if fi.Size() != desc.Size {
		f.Close()
		return nil, fmt.Errorf("blob %s (%s): %w: the descriptor says %d bytes, the file holds %d", desc.Digest, name, ErrSizeMismatch, desc.Size, fi.Size())
	}
	return newVerifyReader(io.LimitReader(f, desc.Size+1), f, desc, name), nil
}

// Verifies reports whether rc is a reader returned by Fetch for desc (of
// any layout of this package), which checks size and digest as it streams;
// a caller holding one need not hash the bytes again.
func (d *Dir) Verifies(desc ocispec.Descriptor, rc io.Reader) bool { return verifies(desc, rc) }

// Exists reports whether the layout holds a blob file with desc's digest.
func (d *Dir) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if desc.Digest.Validate() != nil {
		return false, nil
	}
	fi, err := d.root.Stat(blobPath(desc.Digest))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	return fi.Mode().IsRegular(), nil
}

// Resolve works as Tar.Resolve.
func (d *Dir) Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	return resolve(ctx, d.index, ref, d.Fetch, func(dg digest.Digest) (int64, bool) {
		fi, err := d.root.Stat(blobPath(dg))
		if err != nil || !fi.Mode().IsRegular() {
			return 0, false
		}
		return fi.Size(), true
	})
}

// Blobs lists the blob files of the layout (blobs/<alg>/<encoded> with a
// valid digest as name), sorted by digest.
func (d *Dir) Blobs() ([]BlobInfo, error) {
	fsys := d.root.FS()
	algs, err := fs.ReadDir(fsys, ocispec.ImageBlobsDir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.dir, err)
	}
	var out []BlobInfo
	for _, a := range algs {
		if !a.IsDir() {
			continue
		}
		dir := ocispec.ImageBlobsDir + "/" + a.Name()
		ents, err := fs.ReadDir(fsys, dir)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.dir, err)
		}
		for _, e := range ents {
			name := dir + "/" + e.Name()
			dg, ok := blobDigest(name)
			if !ok || !e.Type().IsRegular() {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", d.dir, err)
			}
			out = append(out, BlobInfo{Digest: dg, Size: fi.Size(), Entry: name})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out, nil
}

// Verify works as Tar.Verify, over the blob files of the directory.
func (d *Dir) Verify(ctx context.Context) ([]Problem, error) {
	blobs, err := d.Blobs()
	if err != nil {
		return nil, err
	}
	return verify(ctx, d.index, blobs, func(_ context.Context, bi BlobInfo) (io.ReadCloser, error) {
		return d.root.Open(bi.Entry)
	}, d.Fetch)
}

// Close releases the directory handle.
func (d *Dir) Close() error { return d.root.Close() }
