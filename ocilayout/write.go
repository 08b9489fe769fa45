package ocilayout

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// BlobOpener gives the bytes of a blob that was verified when it was stored;
// the writers do not hash it again, they only check its length. When the
// returned reader is an *os.File (positioned at the blob's first byte), the
// bytes are copied file to file (copy_file_range on Linux); any other reader
// is streamed through a buffer.
type BlobOpener interface {
	OpenBlob(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error)
}

// BlobOpenerFunc adapts a function (for example an oras-go content.Fetcher's
// Fetch method) to BlobOpener.
type BlobOpenerFunc func(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error)

// OpenBlob calls f.
func (f BlobOpenerFunc) OpenBlob(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	return f(ctx, desc)
}

// WriteOptions tunes WriteTar, CreateTar and WriteDir. The zero value is
// ready to use.
type WriteOptions struct {
	// OnBlob, when not nil, is called once for each blob after it is
	// written (or found already present by WriteDir), from the writing
	// goroutine, in the order the blobs are written: digest order for
	// WriteTar; for a TarBuilder, whenever WriteBlob or Commit writes the
	// blob into its slot, possibly from several goroutines at once.
	OnBlob func(desc ocispec.Descriptor)
	// SkipDigest makes WriteTar skip hashing the tar it writes and return
	// an empty digest. Hashing costs about 1 s of CPU per GiB (SHA-NI) and
	// runs beside the copy; the default (false) hashes.
	SkipDigest bool
	// Digests, when not nil, remembers the digests of the tars WriteTar
	// writes: a tar is a function of its blobs and index only (see
	// TarKey), so a tar written again from the same ones is not hashed
	// again, its digest is looked up. Default nil: every tar is hashed.
	Digests TarDigests
}

// TarDigests remembers the sha256 of tars by TarKey. Implementations must be
// safe for concurrent use; ferry's store is one.
type TarDigests interface {
	// TarDigest returns the digest remembered for key, if any.
	TarDigest(key digest.Digest) (digest.Digest, bool)
	// RememberTarDigest records tar as the digest of the tar of key. A
	// failure to record is not an error of the write.
	RememberTarDigest(key, tar digest.Digest)
}

// tarFormat names the byte layout WriteTar produces; change it whenever the
// bytes for the same blobs and index change, so remembered digests of the
// old layout are not used.
const tarFormat = "ferry oci-layout tar v1"

// TarKey returns the key under which the digest of the tar WriteTar writes
// for blobs and index is remembered (see WriteOptions.Digests): the sha256
// of the writer's format name, index.json's bytes and the sorted, distinct
// blob descriptors (digest and size), which determine every byte of the
// tar (the blobs' bytes are named by their digests).
func TarKey(blobs []ocispec.Descriptor, index ocispec.Index) (digest.Digest, error) {
	sorted, indexJSON, err := plan(blobs, index)
	if err != nil {
		return "", err
	}
	return tarKey(sorted, indexJSON), nil
}

func tarKey(sorted []ocispec.Descriptor, indexJSON []byte) digest.Digest {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%d\n", tarFormat, len(indexJSON))
	h.Write(indexJSON)
	for _, d := range sorted {
		fmt.Fprintf(h, "\n%s %d", d.Digest, d.Size)
	}
	return digest.NewDigest(digest.SHA256, h)
}

const (
	fileMode = 0o644
	dirMode  = 0o755
	// copyChunk bounds one copy_file_range call so that cancellation is
	// noticed within a chunk.
	copyChunk = 64 << 20
	// bufSize is the buffer of streamed copies and hashing reads.
	bufSize = 1 << 20
)

// layoutFile is the content of oci-layout.
var layoutFile = []byte(`{"imageLayoutVersion":"` + ocispec.ImageLayoutVersion + `"}`)

// plan checks and orders what a writer will write: blobs deduplicated and
// sorted by digest, and index.json's bytes.
func plan(blobs []ocispec.Descriptor, index ocispec.Index) ([]ocispec.Descriptor, []byte, error) {
	byDigest := make(map[digest.Digest]ocispec.Descriptor, len(blobs))
	for _, d := range blobs {
		if err := d.Digest.Validate(); err != nil {
			return nil, nil, fmt.Errorf("blob %q: %w: %w", d.Digest, ErrInvalidDescriptor, err)
		}
		if d.Size < 0 {
			return nil, nil, fmt.Errorf("blob %s: %w: negative size %d", d.Digest, ErrInvalidDescriptor, d.Size)
		}
		if o, ok := byDigest[d.Digest]; ok && o.Size != d.Size {
			return nil, nil, fmt.Errorf("blob %s: %w: listed with sizes %d and %d", d.Digest, ErrInvalidDescriptor, o.Size, d.Size)
		}
		byDigest[d.Digest] = d
	}
	if index.SchemaVersion == 0 {
		index.SchemaVersion = 2
	}
	if index.MediaType == "" {
		index.MediaType = ocispec.MediaTypeImageIndex
	}
	for _, m := range index.Manifests {
		b, ok := byDigest[m.Digest]
		if !ok {
			return nil, nil, fmt.Errorf("index.json: root %s: %w: it is not among the blobs to write", m.Digest, ErrMissingBlob)
		}
		if b.Size != m.Size {
			return nil, nil, fmt.Errorf("index.json: root %s: %w: size %d, the blob list says %d", m.Digest, ErrSizeMismatch, m.Size, b.Size)
		}
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return nil, nil, fmt.Errorf("index.json: %w", err)
	}
	sorted := make([]ocispec.Descriptor, 0, len(byDigest))
	for _, d := range byDigest {
		sorted = append(sorted, d)
	}
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Digest < sorted[j].Digest })
	return sorted, indexJSON, nil
}

// blobPath is the slash-separated path of a blob inside a layout.
func blobPath(d digest.Digest) string {
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}

// WriteTar writes an OCI image layout holding blobs (manifests, configs and
// layers, in any order, duplicates allowed) and index as an uncompressed tar
// at path, and returns the tar's sha256 digest.
//
// The tar is byte-for-byte reproducible: entries are oci-layout, index.json
// (first, so streaming readers learn the roots early), the directories blobs/
// and blobs/<alg>/, then each blob once, sorted by digest; every entry has
// mtime 0 (the Unix epoch), uid/gid 0, no user or group names, mode 0644
// (files) or 0755 (directories). Headers are USTAR, with a PAX size record
// for blobs of 8 GiB or more. Each blob's bytes come from src and are not
// hashed again; a blob whose length differs from its descriptor's size fails
// the write with ErrSizeMismatch. Every root of index must be among blobs.
// The tar's hash reads the bytes just written, while the next blobs are
// copied.
//
// With opts.Digests, a tar whose digest is remembered for the same blobs
// and index is not hashed: the remembered digest is returned (the bytes are
// the same by construction). Disk writeback starts while the blobs are
// copied, so the final sync has little left to wait for.
//
// The tar is written under a temporary name in path's directory, synced, and
// renamed to path when complete; on error or cancellation nothing is left.
// The temporary file is locked (flock) while it is written; before writing,
// WriteTar removes unlocked temporary files of the same path that a killed
// run left behind, and never those of a writer still running.
// WriteTar is safe for concurrent use with different paths. It is CreateTar
// followed by Commit; a TarBuilder writes the same tar with its blobs
// arriving in any order.
func WriteTar(ctx context.Context, path string, blobs []ocispec.Descriptor, index ocispec.Index, src BlobOpener, opts WriteOptions) (digest.Digest, error) {
	b, err := CreateTar(ctx, path, blobs, index, opts)
	if err != nil {
		return "", err
	}
	defer b.Abort()
	return b.Commit(ctx, src)
}

const blockSize = 512

// header returns the header blocks for hdr with ferry's fixed metadata.
// archive/tar formats them (USTAR, or PAX when the size needs it); its Writer
// is used for that only (see layoutTar).
func header(name string, typ byte, size int64) ([]byte, error) {
	hdr := &tar.Header{
		Typeflag: typ,
		Name:     name,
		Size:     size,
		Mode:     fileMode,
		ModTime:  time.Unix(0, 0),
	}
	if typ == tar.TypeDir {
		hdr.Mode = dirMode
	}
	var buf bytes.Buffer
	if err := tar.NewWriter(&buf).WriteHeader(hdr); err != nil {
		return nil, fmt.Errorf("tar header for %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

// isRegular reports whether f is a regular file (which pread and
// copy_file_range can read).
func isRegular(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode().IsRegular()
}

// ensureEOF fails when r holds more than the blob's size.
func ensureEOF(r io.Reader, d ocispec.Descriptor) error {
	var b [1]byte
	for {
		n, err := r.Read(b[:])
		if n > 0 {
			return fmt.Errorf("blob %s: %w: source holds more than the %d bytes the descriptor says", d.Digest, ErrSizeMismatch, d.Size)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("blob %s: read: %w", d.Digest, err)
		}
	}
}

// syncDir fsyncs a directory so a rename in it is durable. Errors are
// ignored: some filesystems cannot sync directories.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
