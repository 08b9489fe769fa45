package ocilayout

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
)

// Tar reads an OCI image layout packed as a tar, in place: OpenTar reads the
// headers once and remembers where each blob's bytes are; Fetch reads them
// with random access. It is an oras.ReadOnlyTarget.
//
// Its methods are safe for concurrent use, except Close, which must not run
// concurrently with the others.
type Tar struct {
	tarFile
	index ocispec.Index
	roots []Root
}

var _ oras.ReadOnlyTarget = (*Tar)(nil)

// OpenTar opens the OCI image layout tar at path. It reads every tar header
// once (bodies are skipped, not read), oci-layout and index.json, and checks:
// entry names (no absolute names or ".." elements: ErrUnsafeEntry), entry
// types (only regular files and directories: ErrUnsafeEntry), duplicates
// (ErrDuplicateEntry), truncation (ErrTruncated), oci-layout and index.json
// present and valid (ErrNotLayout, ErrMalformedIndex) and every root listed
// in index.json present with its size (ErrMissingBlob, ErrSizeMismatch).
// Blob contents are verified as they are fetched; Verify checks them all.
// Entries under blobs/ whose names are not digests are ignored. A leading
// "./" on entry names is accepted.
func OpenTar(ctx context.Context, path string) (_ *Tar, err error) {
	f, ti, err := openAndScan(ctx, path, "layout tar", ErrNotLayout)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	t := &Tar{tarFile: tarFile{path: path, f: f, ti: ti, blobs: make(map[digest.Digest]blobLoc)}}

	le, ok := ti.file(ocispec.ImageLayoutFile)
	if !ok {
		hint := ""
		if _, ok := ti.file("manifest.json"); ok {
			hint = " (it has a manifest.json: an imgpkg or docker save tarball?)"
		}
		return nil, fmt.Errorf("%s: %w: no %s entry%s", path, ErrNotLayout, ocispec.ImageLayoutFile, hint)
	}
	b, err := readEntry(f, le, maxLayoutFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", path, ErrNotLayout, err)
	}
	if err := checkLayoutFile(b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ie, ok := ti.file(ocispec.ImageIndexFile)
	if !ok {
		return nil, fmt.Errorf("%s: %w: no %s entry", path, ErrNotLayout, ocispec.ImageIndexFile)
	}
	b, err = readEntry(f, ie, maxIndexFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", path, ErrMalformedIndex, err)
	}
	if t.index, err = parseIndex(b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if t.roots, err = RootsOf(t.index); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}

	for name, e := range ti.entries {
		if d, ok := blobDigest(name); ok && !e.dir {
			t.blobs[d] = blobLoc{entry: e}
		}
	}
	for _, m := range t.index.Manifests {
		loc, ok := t.blobs[m.Digest]
		if !ok {
			return nil, fmt.Errorf("%s: index.json lists root %q: %w", path, m.Annotations[AnnotationRefName], missingBlob(m.Digest, ""))
		}
		if loc.entry.size != m.Size {
			return nil, fmt.Errorf("%s: root %s listed in index.json: %w: index.json says %d bytes, %s holds %d", path, m.Digest, ErrSizeMismatch, m.Size, loc.where(), loc.entry.size)
		}
	}
	return t, nil
}

// blobDigest parses "blobs/<alg>/<encoded>" into a valid digest.
func blobDigest(name string) (digest.Digest, bool) {
	rest, ok := strings.CutPrefix(name, ocispec.ImageBlobsDir+"/")
	if !ok {
		return "", false
	}
	alg, enc, ok := strings.Cut(rest, "/")
	if !ok || strings.Contains(enc, "/") {
		return "", false
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(alg), enc)
	if d.Validate() != nil {
		return "", false
	}
	return d, true
}

// Path returns the path the tar was opened from.
func (t *Tar) Path() string { return t.path }

// Index returns the parsed index.json. The caller must not modify it.
func (t *Tar) Index() ocispec.Index { return t.index }

// Roots returns index.json's entries read with RootFromDescriptor, in order.
func (t *Tar) Roots() []Root { return t.roots }

// Blobs lists every blob entry of the tar, in tar order.
func (t *Tar) Blobs() []BlobInfo { return t.blobInfos() }

// Fetch returns the blob's bytes, read in place. The reader checks size and
// digest as it streams: at the end of the blob it returns an error matching
// ErrDigestMismatch (or ErrSizeMismatch) instead of io.EOF when they do not
// match. A blob not in the tar gives ErrMissingBlob (and errdef.ErrNotFound);
// a descriptor whose size differs from the entry's gives ErrSizeMismatch.
func (t *Tar) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	return t.fetch(ctx, desc)
}

// Verifies works as Dir.Verifies.
func (t *Tar) Verifies(desc ocispec.Descriptor, rc io.Reader) bool { return verifies(desc, rc) }

// Exists reports whether the tar holds a blob with desc's digest.
func (t *Tar) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	return t.exists(ctx, desc)
}

// Resolve returns the index.json entry whose ref name,
// io.containerd.image.name or dev.ferry-oci.original-ref is ref, or whose
// digest is ref ("sha256:<hex>"; a manifest blob not listed in index.json is
// resolved too). Not found gives ErrRefNotFound (and errdef.ErrNotFound);
// a name given to two digests gives ErrConflictingRef.
func (t *Tar) Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	return resolve(ctx, t.index, ref, t.fetch, t.blobSize)
}

func (t *tarFile) blobSize(d digest.Digest) (int64, bool) {
	loc, ok := t.blobs[d]
	if !ok {
		return 0, false
	}
	if loc.data != nil {
		return int64(len(loc.data)), true
	}
	return loc.entry.size, true
}

// Verify re-hashes every blob of the tar and checks that every descriptor
// referenced from index.json (manifests, indexes, configs, layers) is present
// with its size, except non-distributable layers listed in a root's
// dev.ferry-oci.skipped-layers annotation and index children listed in its
// dev.ferry-oci.left-out-children annotation. Content problems are returned as
// Problems; the error is for I/O failures and cancellation.
func (t *Tar) Verify(ctx context.Context) ([]Problem, error) {
	return verify(ctx, t.index, t.blobInfos(), t.openRaw, t.Fetch)
}

// openRaw opens a blob's stored bytes without verification.
func (t *tarFile) openRaw(_ context.Context, bi BlobInfo) (io.ReadCloser, error) {
	loc := t.blobs[bi.Digest]
	if loc.data != nil {
		return io.NopCloser(strings.NewReader(string(loc.data))), nil
	}
	return io.NopCloser(io.NewSectionReader(t.f, loc.entry.offset, loc.entry.size)), nil
}

// Close closes the tar file.
func (t *Tar) Close() error { return t.close() }
