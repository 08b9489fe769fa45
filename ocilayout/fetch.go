package ocilayout

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"sort"

	_ "crypto/sha256" // digest algorithms the readers verify
	_ "crypto/sha512"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
)

// verifyReader streams a blob, counting and hashing it; at the end of the
// blob it returns ErrSizeMismatch or ErrDigestMismatch instead of io.EOF when
// the bytes are not what the descriptor says.
type verifyReader struct {
	r     io.Reader // may hold one byte more than desc.Size, to detect growth
	c     io.Closer // may be nil
	desc  ocispec.Descriptor
	entry string // where the bytes come from, for messages
	h     hash.Hash
	n     int64
	err   error

	// buf holds verified-so-far bytes not yet handed out (buf[pos:end])
	// when the consumer reads in small pieces (net/http sends a request
	// body 32 KiB at a time): the file is then read a whole buffer at a
	// time rather than with one system call per piece.
	buf      []byte
	pos, end int
}

// minDirectRead is the smallest read served straight into the caller's
// buffer; smaller ones go through verifyReader.buf.
const minDirectRead = 256 << 10

// newVerifyReader wraps r; desc.Digest must be valid (checked by callers).
func newVerifyReader(r io.Reader, c io.Closer, desc ocispec.Descriptor, entry string) *verifyReader {
	return &verifyReader{r: r, c: c, desc: desc, entry: entry, h: desc.Digest.Algorithm().Hash()}
}

func (v *verifyReader) Read(p []byte) (int, error) {
	if v.pos < v.end {
		n := copy(p, v.buf[v.pos:v.end])
		v.pos += n
		return n, nil
	}
	if v.err != nil {
		return 0, v.err
	}
	if len(p) == 0 || len(p) >= minDirectRead || v.desc.Size-v.n <= int64(len(p)) {
		return v.read(p)
	}
	if v.buf == nil {
		v.buf = make([]byte, min(int64(bufSize), v.desc.Size-v.n+1))
	}
	n, err := v.read(v.buf)
	k := copy(p, v.buf[:n])
	v.pos, v.end = k, n
	if k < n {
		return k, nil // the error, if any, comes once the buffer is handed out
	}
	return k, err
}

// read reads into p from the source, counting and hashing.
func (v *verifyReader) read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	if v.n+int64(n) > v.desc.Size {
		n = int(v.desc.Size - v.n)
		v.err = fmt.Errorf("blob %s (%s): %w: more than the %d bytes the descriptor says", v.desc.Digest, v.entry, ErrSizeMismatch, v.desc.Size)
	}
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.err != nil {
		return n, v.err
	}
	switch {
	case err == io.EOF && v.n < v.desc.Size:
		v.err = fmt.Errorf("blob %s (%s): %w: %d bytes, the descriptor says %d", v.desc.Digest, v.entry, ErrSizeMismatch, v.n, v.desc.Size)
	case err == io.EOF:
		if got := digest.NewDigest(v.desc.Digest.Algorithm(), v.h); got != v.desc.Digest {
			v.err = digestMismatch(v.desc.Digest, got, v.entry)
		} else {
			v.err = io.EOF
		}
	case err != nil:
		v.err = fmt.Errorf("blob %s (%s): %w", v.desc.Digest, v.entry, err)
	default:
		return n, nil
	}
	return n, v.err
}

// verifies reports whether rc is a verifyReader checking desc's digest and
// size.
func verifies(desc ocispec.Descriptor, rc io.Reader) bool {
	v, ok := rc.(*verifyReader)
	return ok && v.desc.Digest == desc.Digest && v.desc.Size == desc.Size
}

func (v *verifyReader) Close() error {
	if v.c == nil {
		return nil
	}
	return v.c.Close()
}

// blobLoc says where a blob of a tar is: a tar entry, or bytes held in memory
// (imgpkg's manifests and configs, verified when the tar was opened).
type blobLoc struct {
	entry tarEntry
	data  []byte // non-nil for in-memory blobs
}

// where names the blob's location for messages.
func (l blobLoc) where() string {
	if l.data != nil {
		return "embedded in manifest.json"
	}
	return fmt.Sprintf("entry %q", l.entry.name)
}

// tarFile is the random-access part shared by Tar and ImgpkgTar. Its methods
// are safe for concurrent use (reads use pread) until close.
type tarFile struct {
	path  string
	f     *os.File
	ti    *tarIndex
	blobs map[digest.Digest]blobLoc
	refs  referrerIndex // built by the first Referrers call
}

func (t *tarFile) checkDesc(desc ocispec.Descriptor) error {
	if err := desc.Digest.Validate(); err != nil {
		return fmt.Errorf("blob %q: %w: %w", desc.Digest, ErrInvalidDescriptor, err)
	}
	return nil
}

// fetch returns a verifying reader over the blob.
func (t *tarFile) fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := t.checkDesc(desc); err != nil {
		return nil, err
	}
	loc, ok := t.blobs[desc.Digest]
	if !ok {
		return nil, missingBlob(desc.Digest, " in "+t.path)
	}
	var r io.Reader
	var size int64
	if loc.data != nil {
		r, size = bytes.NewReader(loc.data), int64(len(loc.data))
	} else {
		r, size = io.NewSectionReader(t.f, loc.entry.offset, loc.entry.size), loc.entry.size
	}
	if size != desc.Size {
		return nil, fmt.Errorf("blob %s (%s): %w: the descriptor says %d bytes, the layout holds %d", desc.Digest, loc.where(), ErrSizeMismatch, desc.Size, size)
	}
	return newVerifyReader(r, nil, desc, loc.where()), nil
}

// exists reports whether the blob is in the tar (its size is checked by fetch).
func (t *tarFile) exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	_, ok := t.blobs[desc.Digest]
	return ok, nil
}

// blobInfos lists the blobs of the tar, in the order of their entries.
func (t *tarFile) blobInfos() []BlobInfo {
	out := make([]BlobInfo, 0, len(t.blobs))
	for d, loc := range t.blobs {
		bi := BlobInfo{Digest: d, Entry: loc.entry.name, offset: loc.entry.offset}
		if loc.data != nil {
			bi.Size, bi.Entry, bi.offset = int64(len(loc.data)), "manifest.json", -1
		} else {
			bi.Size = loc.entry.size
		}
		out = append(out, bi)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].offset != out[j].offset {
			return out[i].offset < out[j].offset
		}
		return out[i].Digest < out[j].Digest
	})
	return out
}

func (t *tarFile) close() error {
	return t.f.Close()
}

// BlobInfo describes one blob held by a layout.
type BlobInfo struct {
	// Digest is the digest the blob is stored under (not checked by
	// listing; Verify checks it).
	Digest digest.Digest
	// Size is the stored length in bytes.
	Size int64
	// Entry is the tar entry name or the path inside the layout directory
	// ("manifest.json" for manifests and configs embedded in an imgpkg tar).
	Entry string

	offset int64
}

// resolve finds a descriptor by digest or by name among index's entries: the
// ref name, io.containerd.image.name or ferry's original reference. A digest
// not listed in index but present as a blob is resolved when it is a
// manifest or index (its media type read from the blob).
func resolve(ctx context.Context, index ocispec.Index, ref string, fetch func(context.Context, ocispec.Descriptor) (io.ReadCloser, error), size func(digest.Digest) (int64, bool)) (ocispec.Descriptor, error) {
	if err := ctx.Err(); err != nil {
		return ocispec.Descriptor{}, err
	}
	if d, err := digest.Parse(ref); err == nil {
		for _, m := range index.Manifests {
			if m.Digest == d {
				return m, nil
			}
		}
		n, ok := size(d)
		if !ok {
			return ocispec.Descriptor{}, fmt.Errorf("resolve %s: %w: no such blob", d, errRefNotFound)
		}
		if n > maxManifestBlob {
			return ocispec.Descriptor{}, fmt.Errorf("resolve %s: %w: the blob is %d bytes, too large for a manifest", d, errRefNotFound, n)
		}
		desc := ocispec.Descriptor{Digest: d, Size: n}
		b, err := fetchAll(ctx, fetch, desc)
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		mt, err := sniffMediaType(b)
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("resolve %s: %w", d, err)
		}
		desc.MediaType = mt
		return desc, nil
	}
	var found *ocispec.Descriptor
	for i, m := range index.Manifests {
		a := m.Annotations
		if a[AnnotationRefName] != ref && a[AnnotationContainerdName] != ref && a[AnnotationFerryOriginalRef] != ref {
			continue
		}
		if found != nil && found.Digest != m.Digest {
			return ocispec.Descriptor{}, fmt.Errorf("resolve %q: %w: %s and %s", ref, ErrConflictingRef, found.Digest, m.Digest)
		}
		if found == nil {
			found = &index.Manifests[i]
		}
	}
	if found == nil {
		return ocispec.Descriptor{}, fmt.Errorf("resolve %q: %w", ref, errRefNotFound)
	}
	return *found, nil
}

// errRefNotFound also matches oras-go's errdef.ErrNotFound.
var errRefNotFound = fmt.Errorf("%w (%w)", ErrRefNotFound, errdef.ErrNotFound)

// fetchAll reads a whole (small) blob through fetch, verified.
func fetchAll(ctx context.Context, fetch func(context.Context, ocispec.Descriptor) (io.ReadCloser, error), desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size > maxManifestBlob {
		return nil, fmt.Errorf("blob %s: %w: %d bytes is more than the %d read into memory", desc.Digest, ErrMalformedManifest, desc.Size, maxManifestBlob)
	}
	rc, err := fetch(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b := make([]byte, 0, desc.Size)
	buf := bytes.NewBuffer(b)
	if _, err := buf.ReadFrom(rc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// sniffMediaType reads the media type of a manifest or index blob.
func sniffMediaType(b []byte) (string, error) {
	var m struct {
		MediaType string          `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
		Config    json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return "", fmt.Errorf("%w: not a manifest or index: %w", errRefNotFound, err)
	}
	switch {
	case m.MediaType != "":
		return m.MediaType, nil
	case m.Manifests != nil:
		return ocispec.MediaTypeImageIndex, nil
	case m.Config != nil:
		return ocispec.MediaTypeImageManifest, nil
	}
	return "", fmt.Errorf("%w: not a manifest or index", errRefNotFound)
}
