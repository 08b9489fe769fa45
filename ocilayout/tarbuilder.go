package ocilayout

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TarBuilder writes the tar [WriteTar] writes (the same bytes for the same
// blobs and index) while its blobs arrive in any order: every entry's offset
// follows from the blobs' sizes, so [CreateTar] writes the headers and
// index.json at once and each blob is copied into its own slot of the file
// whenever it is ready, for example as a download into a store completes.
// The tar's sha256 is computed as it fills: a goroutine hashes the filled
// prefix of the file (bytes just written, still in the page cache), so when
// the last blob lands only the part after the first slot still empty is
// left to hash.
//
// Create one with CreateTar, call WriteBlob for blobs as they become
// available, then Commit, which writes the blobs not written yet and
// renames the tar into place. Until Commit succeeds the tar only exists
// under a locked temporary name (see WriteTar); Abort removes it. Call
// Abort on every path that does not commit (it does nothing after Commit),
// or the hashing goroutine and the open file are kept.
//
// WriteBlob is safe for concurrent use; Commit and Abort may be called from
// any goroutine, and Abort interrupts a running Commit and the WriteBlob
// calls in flight.
type TarBuilder struct {
	path  string
	dir   string // path's directory
	base  string // path's file name
	tmp   string // the temporary file's name in root
	root  *os.Root
	f     *os.File
	size  int64 // the whole tar
	slots []tarSlot
	slot  map[digest.Digest]*tarSlot
	key   digest.Digest // TarKey of the blobs and index
	known digest.Digest // the remembered digest, if any
	opts  WriteOptions

	ctx    context.Context // cancelled by Abort and when Commit ends
	cancel context.CancelFunc

	filled   chan struct{} // capacity 1: a slot was filled (wakes the hasher)
	hashDone chan struct{} // closed when the hasher returns; nil when not hashing
	hashSum  digest.Digest // set before hashDone is closed
	hashErr  error

	writers blobWriters

	finish   sync.Mutex // serializes Commit and Abort
	finished bool
}

// tarSlot is where one blob's bytes go.
type tarSlot struct {
	desc ocispec.Descriptor
	off  int64      // offset of the blob's first byte in the tar
	mu   sync.Mutex // held while the slot is written
	done atomic.Bool
}

// tarRegion is a run of bytes between two slots (headers, padding,
// directories, oci-layout and index.json, the end-of-archive marker).
type tarRegion struct {
	off  int64
	data []byte
}

// layoutTar lays out the tar of the sorted blobs and index.json: the fixed
// regions, the slot of every blob and the total size. The entries and their
// order are those WriteTar documents.
func layoutTar(sorted []ocispec.Descriptor, indexJSON []byte) ([]tarRegion, []tarSlot, int64, error) {
	var (
		regions []tarRegion
		cur     bytes.Buffer // the region being built, starting at start
		start   int64
		off     int64
	)
	add := func(b []byte) {
		cur.Write(b)
		off += int64(len(b))
	}
	pad := func() {
		if r := off % blockSize; r != 0 {
			add(make([]byte, blockSize-r))
		}
	}
	entry := func(name string, typ byte, size int64) error {
		h, err := header(name, typ, size)
		if err != nil {
			return err
		}
		add(h)
		return nil
	}
	if err := entry(ocispec.ImageLayoutFile, tar.TypeReg, int64(len(layoutFile))); err != nil {
		return nil, nil, 0, err
	}
	add(layoutFile)
	pad()
	if err := entry(ocispec.ImageIndexFile, tar.TypeReg, int64(len(indexJSON))); err != nil {
		return nil, nil, 0, err
	}
	add(indexJSON)
	pad()
	if err := entry(ocispec.ImageBlobsDir+"/", tar.TypeDir, 0); err != nil {
		return nil, nil, 0, err
	}
	slots := make([]tarSlot, len(sorted))
	var alg digest.Algorithm
	for i, d := range sorted {
		if d.Digest.Algorithm() != alg {
			alg = d.Digest.Algorithm()
			if err := entry(ocispec.ImageBlobsDir+"/"+alg.String()+"/", tar.TypeDir, 0); err != nil {
				return nil, nil, 0, err
			}
		}
		if err := entry(blobPath(d.Digest), tar.TypeReg, d.Size); err != nil {
			return nil, nil, 0, err
		}
		regions = append(regions, tarRegion{off: start, data: bytes.Clone(cur.Bytes())})
		cur.Reset()
		slots[i].desc = d
		slots[i].off = off
		off += d.Size
		start = off
		pad()
	}
	add(make([]byte, 2*blockSize)) // end-of-archive marker
	regions = append(regions, tarRegion{off: start, data: cur.Bytes()})
	return regions, slots, off, nil
}

// CreateTar starts the tar WriteTar would write at path for blobs (in any
// order, duplicates allowed) and index: it checks them as WriteTar does,
// removes the temporary files of path that killed runs left, creates a
// locked temporary file next to path and writes every header, oci-layout
// and index.json into it, leaving a slot of the right size for each blob.
// ctx bounds the creation only; WriteBlob and Commit take their own.
//
// opts applies as for WriteTar. With opts.SkipDigest or a digest
// remembered in opts.Digests for the same blobs and index, nothing is
// hashed. opts.OnBlob is called once per blob, after it is written into its
// slot, from the goroutine that wrote it (a WriteBlob caller, or Commit for
// the blobs it writes itself), so not in digest order.
func CreateTar(ctx context.Context, path string, blobs []ocispec.Descriptor, index ocispec.Index, opts WriteOptions) (_ *TarBuilder, err error) {
	sorted, indexJSON, err := plan(blobs, index)
	if err != nil {
		return nil, err
	}
	regions, slots, size, err := layoutTar(sorted, indexJSON)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("create tar: %w", err)
	}
	removeStaleTemps(root, ".", func(target string) bool { return target == base })
	tmp, f, err := createLockedTemp(root, base)
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("create tar: %w", err)
	}
	b := &TarBuilder{
		path: path, dir: dir, base: base, tmp: tmp, root: root, f: f,
		size: size, slots: slots, slot: make(map[digest.Digest]*tarSlot, len(slots)),
		key: tarKey(sorted, indexJSON), opts: opts,
		filled: make(chan struct{}, 1),
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			b.discard(false)
		}
	}()
	preallocate(f, size)
	for i := range b.slots {
		b.slot[b.slots[i].desc.Digest] = &b.slots[i]
	}
	for i, r := range regions {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		if _, err := f.WriteAt(r.data, r.off); err != nil {
			return nil, fmt.Errorf("write tar: %w", err)
		}
	}
	if !opts.SkipDigest && opts.Digests != nil {
		known, _ := opts.Digests.TarDigest(b.key)
		if known.Validate() == nil && known.Algorithm() == digest.SHA256 {
			b.known = known
		}
	}
	if !opts.SkipDigest && b.known == "" {
		b.hashDone = make(chan struct{})
		go func() {
			defer close(b.hashDone)
			b.hashSum, b.hashErr = b.hash()
		}()
	}
	return b, nil
}

// Key returns TarKey of the blobs and index b was created with: two
// builders or WriteTar calls with the same key write the same bytes.
func (b *TarBuilder) Key() digest.Digest { return b.key }

// WriteBlob copies the blob desc from src into its slot (file to file with
// copy_file_range when src gives an *os.File, else through a buffer), and
// starts its writeback to disk. The bytes are not hashed (see BlobOpener),
// only counted: a source holding more or fewer than desc.Size bytes fails
// with ErrSizeMismatch and leaves the slot to be written again. A blob
// already written is not written again (nil is returned); a call for a
// blob being written by another goroutine waits for it. A digest that is
// not among the tar's blobs fails with ErrUnknownBlob, a call after Commit
// or Abort with ErrBuilderClosed. Safe for concurrent use.
func (b *TarBuilder) WriteBlob(ctx context.Context, desc ocispec.Descriptor, src BlobOpener) error {
	s, ok := b.slot[desc.Digest]
	if !ok {
		return fmt.Errorf("blob %s: %w", desc.Digest, ErrUnknownBlob)
	}
	if desc.Size != s.desc.Size {
		return fmt.Errorf("blob %s: %w: size %d, the tar was created for %d", desc.Digest, ErrSizeMismatch, desc.Size, s.desc.Size)
	}
	if !b.writers.enter() {
		return fmt.Errorf("blob %s: tar %s: %w", desc.Digest, b.path, ErrBuilderClosed)
	}
	defer b.writers.leave()
	ctx, stop := b.bind(ctx)
	defer stop()
	return b.fill(ctx, s, src)
}

// Commit writes the blobs WriteBlob has not written (in digest order, from
// src), waits for the tar's hash, syncs the file and renames it to the
// path given to CreateTar, and returns the tar's sha256: the one
// remembered in WriteOptions.Digests when there is one (the computed one
// is remembered there otherwise), "" with SkipDigest. On error or
// cancellation the temporary file is removed and nothing is left at path.
// Commit may be called once; later calls fail with ErrBuilderClosed.
func (b *TarBuilder) Commit(ctx context.Context, src BlobOpener) (_ digest.Digest, err error) {
	b.finish.Lock()
	defer b.finish.Unlock()
	if b.finished {
		return "", fmt.Errorf("commit tar %s: %w", b.path, ErrBuilderClosed)
	}
	b.finished = true
	renamed := false
	defer func() {
		if err != nil {
			b.discard(renamed)
		}
	}()
	ctx, stop := b.bind(ctx)
	defer stop()
	for i := range b.slots {
		if err := b.fill(ctx, &b.slots[i], src); err != nil {
			return "", err
		}
	}
	b.writers.close()
	sum := b.known
	if b.hashDone != nil {
		select {
		case <-b.hashDone:
		case <-ctx.Done():
			return "", ctx.Err()
		}
		if b.hashErr != nil {
			return "", fmt.Errorf("hash tar: %w", b.hashErr)
		}
		sum = b.hashSum
	}
	tmpPath := filepath.Join(b.dir, b.tmp)
	if err := b.f.Sync(); err != nil {
		return "", fmt.Errorf("sync %s: %w", tmpPath, err)
	}
	if err := b.f.Chmod(fileMode); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	renamed, err = commitTemp(b.f, func() error { return b.root.Rename(b.tmp, b.base) })
	if err != nil {
		if !renamed {
			return "", fmt.Errorf("rename tar into place: %w", err)
		}
		return "", fmt.Errorf("close %s: %w", b.path, err)
	}
	syncDir(b.dir)
	b.cancel()
	b.root.Close()
	if b.known == "" && sum != "" && b.opts.Digests != nil {
		b.opts.Digests.RememberTarDigest(b.key, sum)
	}
	return sum, nil
}

// Abort stops the WriteBlob calls in flight and a running Commit and
// removes the temporary file. It does nothing after Commit (which cleans up
// itself when it fails) or a first Abort. Safe for concurrent use.
func (b *TarBuilder) Abort() {
	b.cancel() // a running Commit stops and discards the file itself
	b.finish.Lock()
	defer b.finish.Unlock()
	if b.finished {
		return
	}
	b.finished = true
	b.discard(false)
}

// discard stops everything and removes the file: the temporary one, or
// path when it was renamed but could not be closed.
func (b *TarBuilder) discard(renamed bool) {
	b.cancel()
	b.writers.close()
	if b.hashDone != nil {
		<-b.hashDone
	}
	b.f.Close()
	if renamed {
		b.root.Remove(b.base)
	} else {
		b.root.Remove(b.tmp)
	}
	b.root.Close()
}

// bind returns ctx, also cancelled when b is aborted.
func (b *TarBuilder) bind(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(b.ctx, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// fill writes slot s unless it is written, then tells the hasher and
// OnBlob.
func (b *TarBuilder) fill(ctx context.Context, s *tarSlot, src BlobOpener) error {
	wrote, err := b.fillSlot(ctx, s, src)
	if err != nil || !wrote {
		return err
	}
	select {
	case b.filled <- struct{}{}:
	default: // the hasher has a wake-up pending already
	}
	if b.opts.OnBlob != nil {
		b.opts.OnBlob(s.desc)
	}
	return nil
}

func (b *TarBuilder) fillSlot(ctx context.Context, s *tarSlot, src BlobOpener) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done.Load() {
		return false, nil
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	d := s.desc
	rc, err := src.OpenBlob(ctx, d)
	if err != nil {
		return false, fmt.Errorf("open blob %s: %w", d.Digest, err)
	}
	defer rc.Close()
	if f, ok := rc.(*os.File); ok && isRegular(f) {
		err = b.copyFile(ctx, f, s)
	} else {
		err = b.copyStream(ctx, rc, s)
	}
	if err != nil {
		return false, err
	}
	if err := ensureEOF(rc, d); err != nil {
		return false, err
	}
	s.done.Store(true)
	return true, nil
}

// copyFile copies the blob from f (at its current offset) into its slot
// with copy_file_range, through a second descriptor of the tar whose
// offset is the slot's (copy_file_range copies between file offsets), in
// chunks so that cancellation is noticed. When the tar cannot be opened
// again, the bytes go through a buffer and the first descriptor.
func (b *TarBuilder) copyFile(ctx context.Context, f *os.File, s *tarSlot) error {
	d := s.desc
	if err := checkFileSize(f, d); err != nil {
		return err
	}
	if d.Size == 0 {
		return nil
	}
	w, err := b.root.OpenFile(b.tmp, os.O_WRONLY, 0)
	if err != nil {
		// Not writable by name (a umask that leaves the owner no write
		// permission): through the descriptor CreateTar opened.
		return b.copyStream(ctx, f, s)
	}
	defer w.Close()
	if _, err := w.Seek(s.off, io.SeekStart); err != nil {
		return fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	var copied int64
	for copied < d.Size {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := io.Copy(w, &io.LimitedReader{R: f, N: min(copyChunk, d.Size-copied)})
		if n > 0 {
			startWriteback(w, s.off+copied, n)
		}
		copied += n
		if err != nil {
			return fmt.Errorf("blob %s: copy into tar: %w", d.Digest, err)
		}
		if n == 0 {
			return fmt.Errorf("blob %s: %w: source ended after %d bytes, descriptor says %d", d.Digest, ErrSizeMismatch, copied, d.Size)
		}
	}
	return nil
}

// copyStream copies the blob from r into its slot through a buffer.
func (b *TarBuilder) copyStream(ctx context.Context, r io.Reader, s *tarSlot) error {
	d := s.desc
	buf := make([]byte, min(bufSize, d.Size))
	var copied, started int64 // started: bytes whose writeback was started
	for copied < d.Size {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := r.Read(buf[:min(int64(len(buf)), d.Size-copied)])
		if n > 0 {
			if _, werr := b.f.WriteAt(buf[:n], s.off+copied); werr != nil {
				return fmt.Errorf("write tar: %w", werr)
			}
			copied += int64(n)
			if copied-started >= copyChunk {
				startWriteback(b.f, s.off+started, copied-started)
				started = copied
			}
		}
		if err == io.EOF && copied < d.Size {
			return fmt.Errorf("blob %s: %w: source ended after %d bytes, descriptor says %d", d.Digest, ErrSizeMismatch, copied, d.Size)
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("blob %s: read: %w", d.Digest, err)
		}
	}
	if copied > started {
		startWriteback(b.f, s.off+started, copied-started)
	}
	return nil
}

// hash hashes the tar from its start as its slots fill: up to the first
// slot not written, then, woken by each fill, on from there, until the end.
func (b *TarBuilder) hash() (digest.Digest, error) {
	h := sha256.New()
	buf := make([]byte, bufSize)
	var pos int64
	next := 0 // the first slot not known to be written
	for {
		end := b.size
		for ; next < len(b.slots); next++ {
			if !b.slots[next].done.Load() {
				end = b.slots[next].off
				break
			}
		}
		for pos < end {
			if err := b.ctx.Err(); err != nil {
				return "", err
			}
			n, err := b.f.ReadAt(buf[:min(int64(len(buf)), end-pos)], pos)
			h.Write(buf[:n])
			pos += int64(n)
			if err != nil && (err != io.EOF || pos < end) {
				return "", err
			}
		}
		if next == len(b.slots) {
			return digest.NewDigest(digest.SHA256, h), nil
		}
		select {
		case <-b.filled:
		case <-b.ctx.Done():
			return "", b.ctx.Err()
		}
	}
}

// checkFileSize fails early when a regular file does not hold exactly the
// blob's size from its current offset.
func checkFileSize(f *os.File, d ocispec.Descriptor) error {
	fi, err := f.Stat()
	if err != nil {
		return nil // the copy and ensureEOF still count the bytes
	}
	pos, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil
	}
	if n := fi.Size() - pos; n != d.Size {
		return fmt.Errorf("blob %s: %w: source holds %d bytes, descriptor says %d", d.Digest, ErrSizeMismatch, n, d.Size)
	}
	return nil
}
