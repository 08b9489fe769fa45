package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	orascontent "oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
)

// Sentinel errors. Errors returned by this package wrap one of them (or an
// error of the remote or of the file system) together with the digest or
// path at fault; test with [errors.Is].
var (
	// ErrNotFound: the blob is not committed in the store. It also matches
	// oras-go's errdef.ErrNotFound.
	ErrNotFound = fmt.Errorf("not in the store: %w", errdef.ErrNotFound)
	// ErrDigestMismatch: content does not hash to its digest. It also matches
	// oras-go's content.ErrMismatchedDigest.
	ErrDigestMismatch = fmt.Errorf("digest mismatch: %w", orascontent.ErrMismatchedDigest)
	// ErrSizeMismatch: content is shorter or longer than its descriptor says.
	ErrSizeMismatch = errors.New("size mismatch")
	// ErrInvalidDescriptor: the descriptor has an invalid digest or a negative size.
	ErrInvalidDescriptor = errors.New("invalid descriptor")
	// ErrNoLocation: no store root was given and none can be derived from
	// the environment.
	ErrNoLocation = errors.New("no store location: set FERRY_STORE, XDG_CACHE_HOME or HOME")
)

// Defaults of a [Store] opened with [Open].
const (
	// DefaultRetries is how many times in a row one download may be cut
	// (connection reset, body ended early) without any progress before
	// the fetch fails. Progress resets the count.
	DefaultRetries = 5
	// DefaultRetryBackoff is the wait before the first retry of a cut
	// download; it doubles with every retry without progress.
	DefaultRetryBackoff = 100 * time.Millisecond
	// lockPoll is how often a waiter tries a busy ingest lock again.
	lockPoll = 25 * time.Millisecond
	// copyBufferSize is the size of the buffers that move data to disk.
	copyBufferSize = 1 << 20
)

// Store is a local content-addressable store rooted at one directory. Its
// methods are safe for concurrent use, and several processes may open the
// same root at the same time. The zero value is not usable; call [Open].
type Store struct {
	root string
	cs   content.Store

	retries int
	backoff time.Duration
	bufs    sync.Pool

	refMu   sync.Mutex
	refCaps map[string]*hostReferrers // by registry host: its referrers API, once known

	smallMu       sync.Mutex
	smallInFlight map[digest.Digest]chan struct{} // small blobs being downloaded by this process

	noAnonymous atomic.Bool // writeAnonymous is not available for this root

	// intact holds the small blobs (digest.Digest) this process wrote or
	// hashed: their files are known to hold their bytes (see writeSmall).
	intact sync.Map
}

// Statically pin what the store satisfies.
var _ orascontent.Storage = (*Store)(nil)

// DefaultRoot returns the store location from the environment read through
// getenv (os.Getenv in a program): $FERRY_STORE when set, otherwise
// $XDG_CACHE_HOME/ferry/store when XDG_CACHE_HOME is an absolute path,
// otherwise $HOME/.cache/ferry/store. It fails with [ErrNoLocation] when none
// of them is set.
func DefaultRoot(getenv func(string) string) (string, error) {
	if v := getenv("FERRY_STORE"); v != "" {
		return v, nil
	}
	if v := getenv("XDG_CACHE_HOME"); v != "" && filepath.IsAbs(v) {
		return filepath.Join(v, "ferry", "store"), nil
	}
	if v := getenv("HOME"); v != "" {
		return filepath.Join(v, ".cache", "ferry", "store"), nil
	}
	return "", ErrNoLocation
}

// Open opens the store at root, creating the directory (mode 0700, like its
// missing parents) when it does not exist. An existing directory keeps its
// mode. The context is reserved for future checks; opening does no network I/O.
func Open(ctx context.Context, root string) (*Store, error) {
	if root == "" {
		return nil, ErrNoLocation
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", root, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(abs, 0o700); err != nil {
			return nil, fmt.Errorf("store %s: %w", abs, err)
		}
		// MkdirAll applies the umask; the store holds pulled content and
		// must not be readable by others whatever the umask.
		if err := os.Chmod(abs, 0o700); err != nil {
			return nil, fmt.Errorf("store %s: %w", abs, err)
		}
	case err != nil:
		return nil, fmt.Errorf("store %s: %w", abs, err)
	case !fi.IsDir():
		return nil, fmt.Errorf("store %s: not a directory", abs)
	}
	if err := os.MkdirAll(filepath.Join(abs, "locks"), 0o700); err != nil {
		return nil, fmt.Errorf("store %s: %w", abs, err)
	}
	cs, err := local.NewStore(abs)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", abs, err)
	}
	s := &Store{root: abs, cs: cs, retries: DefaultRetries, backoff: DefaultRetryBackoff}
	s.bufs.New = func() any { b := make([]byte, copyBufferSize); return &b }
	return s, nil
}

// Root returns the absolute path of the store's root directory.
func (s *Store) Root() string { return s.root }

// blobPath is where a committed blob with digest d lives (whether or not it
// exists).
func (s *Store) blobPath(d digest.Digest) (string, error) {
	if err := validDigest(d); err != nil {
		return "", err
	}
	return filepath.Join(s.root, "blobs", d.Algorithm().String(), d.Encoded()), nil
}

// validDigest checks d as d.Validate does, without its regular expression
// in the common case (sha256: 64 lowercase hex digits); every store call
// checks its digest, some twice.
func validDigest(d digest.Digest) error {
	if hex, ok := strings.CutPrefix(string(d), "sha256:"); ok && len(hex) == 64 && isLowerHex(hex) {
		return nil
	}
	if err := d.Validate(); err != nil {
		return fmt.Errorf("blob %q: %w: %v", d, ErrInvalidDescriptor, err)
	}
	return nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func validate(desc ocispec.Descriptor) error {
	if err := validDigest(desc.Digest); err != nil {
		return err
	}
	if desc.Size < 0 {
		return fmt.Errorf("blob %s: %w: size %d", desc.Digest, ErrInvalidDescriptor, desc.Size)
	}
	return nil
}

// BlobPath returns the path of the committed blob d, for copying it file to
// file (it was verified at commit and is read-only; a small blob's file is
// checked as [Store.Exists] says). It records a use of the
// blob for [Store.Prune]. It fails with [ErrNotFound] when d is not committed.
// A concurrent Prune or Verify may remove the file after BlobPath returns.
func (s *Store) BlobPath(d digest.Digest) (string, error) {
	p, err := s.blobPath(d)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("blob %s: %w", d, ErrNotFound)
		}
		return "", fmt.Errorf("blob %s: %w", d, err)
	}
	if err := s.checkSmallPath(p, d, fi.Size()); err != nil {
		return "", err
	}
	s.touchUsed(p, fi.ModTime())
	return p, nil
}

// touch records a use of the blob file at p: its modification time is the
// last use (committed blobs are never written again, and reading does not
// change it).
func (s *Store) touch(p string) {
	// A failure only makes prune think the blob is older than it is.
	_ = os.Chtimes(p, time.Time{}, time.Now())
}

// useGranularity is how precisely the last use of a blob is recorded: a
// use less than this after the recorded one is not written, which saves a
// write of the file's metadata for every read of a blob committed or used a
// moment ago (a blob read several times in one run).
const useGranularity = time.Minute

// touchUsed is touch for a blob file whose modification time is mtime.
func (s *Store) touchUsed(p string, mtime time.Time) {
	if since := time.Since(mtime); since >= 0 && since < useGranularity {
		return
	}
	s.touch(p)
}

// committed reports whether a blob with digest d is committed (whatever
// its size).
func (s *Store) committed(d digest.Digest) (bool, error) {
	p, err := s.blobPath(d)
	if err != nil {
		return false, err
	}
	_, err = os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Exists reports whether the blob desc is committed in the store. A committed
// blob whose size differs from desc.Size is an error wrapping [ErrSizeMismatch].
// The file of a small blob (256 KiB or less) that this process has not
// written or read before is hashed first: one whose bytes a power loss
// spoilt (see [Store.Fetch]) is not committed.
func (s *Store) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	if err := validate(desc); err != nil {
		return false, err
	}
	p, _ := s.blobPath(desc.Digest)
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	if err := s.checkSmallPath(p, desc.Digest, fi.Size()); err != nil {
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		return false, err
	}
	if fi.Size() != desc.Size {
		return false, fmt.Errorf("blob %s: %w: the store has %d bytes, the descriptor says %d", desc.Digest, ErrSizeMismatch, fi.Size(), desc.Size)
	}
	return true, nil
}

// Fetch opens the committed blob desc for reading and records its use. It
// fails with [ErrNotFound] when the blob is not committed, and with
// [ErrSizeMismatch] when the committed blob's size differs from desc.Size.
// The returned reader is an *os.File (seekable, with ReadAt).
//
// Small blobs (256 KiB or less) are written without waiting for the disk
// (see writeSmall), so after a power loss the file of one written just
// before may hold other bytes. The first time a process opens (or asks
// [Store.Exists] about) a small blob it did not write, its file is hashed;
// one that does not hold the blob's bytes counts as not committed
// ([ErrNotFound]), and a new download replaces it.
func (s *Store) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if err := validate(desc); err != nil {
		return nil, err
	}
	return s.openBlob(desc)
}

// Verifies reports whether rc is a reader this store returned for desc
// whose content was or is being verified against desc: a committed blob as
// opened by [Store.Fetch] (verified at commit), or a reader of
// [CachedTarget.Fetch]. A caller holding such a reader need not hash its
// bytes again. It is false for any other reader.
func (s *Store) Verifies(desc ocispec.Descriptor, rc io.Reader) bool {
	switch r := rc.(type) {
	case *ingestReader:
		return r.s == s && r.desc.Digest == desc.Digest && r.desc.Size == desc.Size
	case *verifyingReader:
		return r.desc.Digest == desc.Digest && r.desc.Size == desc.Size
	case *smallBlob:
		return r.desc.Digest == desc.Digest && r.desc.Size == desc.Size
	case *os.File:
		p, err := s.blobPath(desc.Digest)
		if err != nil || r.Name() != p {
			return false
		}
		fi, err := r.Stat()
		return err == nil && fi.Mode().IsRegular() && fi.Size() == desc.Size
	}
	return false
}

// openBlob opens a committed blob, checks its size and records the use.
func (s *Store) openBlob(desc ocispec.Descriptor) (*os.File, error) {
	p, err := s.blobPath(desc.Digest)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("blob %s: %w", desc.Digest, ErrNotFound)
		}
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	if err := s.checkSmallFile(f, desc.Digest, fi.Size()); err != nil {
		f.Close()
		return nil, err
	}
	if fi.Size() != desc.Size {
		f.Close()
		return nil, fmt.Errorf("blob %s: %w: the store has %d bytes, the descriptor says %d", desc.Digest, ErrSizeMismatch, fi.Size(), desc.Size)
	}
	s.touchUsed(p, fi.ModTime())
	return f, nil
}

// Push writes the content read from r into the store as the blob desc. The
// content is verified against desc's size and digest before it is committed;
// on a mismatch nothing is committed and the error wraps [ErrSizeMismatch] or
// [ErrDigestMismatch]. A blob that is already committed is not an error (r is
// not read). Push waits while another goroutine or process writes the same
// digest. A reader returned by this store's [CachedTarget.Fetch] for the same
// blob is read to the end, which commits it, so oras.CopyGraph from
// s.Cache(remote) to s works (though reading from the cache alone is enough).
func (s *Store) Push(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	if err := validate(desc); err != nil {
		return err
	}
	if ok, err := s.Exists(ctx, desc); err != nil || ok {
		return err
	}
	if ir, ok := r.(*ingestReader); ok && ir.s.root == s.root && ir.desc.Digest == desc.Digest {
		// The reader is this store's own download of the blob (a copy
		// from s.Cache(remote) to s): it holds the ingest lock, and
		// reading it to the end commits the blob.
		return s.drain(ir)
	}
	if desc.Size <= smallBlobMax {
		return s.pushSmall(ctx, desc, r)
	}
	lock, err := s.lockIngest(ctx, desc.Digest)
	if err != nil {
		return err
	}
	defer lock.release()
	w, err := s.openWriter(ctx, desc)
	if errors.Is(err, errdefs.ErrAlreadyExists) {
		return nil
	}
	if err != nil {
		return err
	}
	// The caller's reader starts at byte 0: a partial ingest cannot be
	// continued from it.
	if st, err := w.Status(); err != nil || st.Offset != 0 {
		if err := w.Truncate(0); err != nil {
			w.Close()
			return fmt.Errorf("blob %s: %w", desc.Digest, err)
		}
	}
	buf := s.bufs.Get().(*[]byte)
	sw := &storeWriter{w: w, desc: desc}
	n, err := io.CopyBuffer(sw, io.LimitReader(struct{ io.Reader }{r}, desc.Size+1), *buf)
	s.bufs.Put(buf)
	if err != nil {
		w.Close()
		if sw.err != nil {
			return sw.err // the store failed (a full disk), not the reader
		}
		return fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	if err := s.checkWritten(desc, n, w.Digest()); err != nil {
		s.discard(ctx, w, desc)
		return err
	}
	return s.commit(ctx, w, desc)
}

// pushSmall is Push for a small blob (see smallBlobMax): read whole,
// verified, written in one piece, without the ingest lock (see
// smallBlobMax).
func (s *Store) pushSmall(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	data, err := readSmall(r, desc.Size)
	if err != nil {
		return fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	if err := s.checkWritten(desc, int64(len(data)), desc.Digest.Algorithm().FromBytes(data)); err != nil {
		return err
	}
	return s.writeSmall(desc, data)
}

// storeWriter writes into an ingest and names the store as the culprit of
// a failed write.
type storeWriter struct {
	w    io.Writer
	desc ocispec.Descriptor
	err  error
}

func (s *storeWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if err != nil && s.err == nil {
		s.err = fmt.Errorf("store: write blob %s: %w", s.desc.Digest, err)
		err = s.err
	}
	return n, err
}

// drain reads r to the end.
func (s *Store) drain(r io.Reader) error {
	buf := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(buf)
	for {
		_, err := r.Read(*buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// checkWritten compares what was written with the descriptor.
func (s *Store) checkWritten(desc ocispec.Descriptor, n int64, got digest.Digest) error {
	if n != desc.Size {
		what := "fewer"
		if n > desc.Size {
			what = "more"
		}
		return fmt.Errorf("blob %s: %w: got %s than %d bytes", desc.Digest, ErrSizeMismatch, what, desc.Size)
	}
	if got != desc.Digest {
		return fmt.Errorf("blob %s: %w: content hashes to %s", desc.Digest, ErrDigestMismatch, got)
	}
	return nil
}

// commit commits a verified ingest; a blob committed meanwhile is success.
func (s *Store) commit(ctx context.Context, w content.Writer, desc ocispec.Descriptor) error {
	err := w.Commit(ctx, desc.Size, desc.Digest)
	if err != nil && !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("store: commit blob %s: %w", desc.Digest, err)
	}
	return nil
}

// discard closes w and removes its ingest: the data is wrong.
func (s *Store) discard(ctx context.Context, w content.Writer, desc ocispec.Descriptor) {
	w.Close()
	_ = s.cs.Abort(ctx, desc.Digest.String())
}

// openWriter opens (or resumes) the ingest of desc, keyed by its digest. The
// caller holds the ingest lock. A broken ingest directory (left by a process
// killed while creating it) is removed first. The data file's blocks are
// reserved for the whole blob when the filesystem has room (preallocate).
// It returns an error matching errdefs.ErrAlreadyExists when the blob is
// committed.
func (s *Store) openWriter(ctx context.Context, desc ocispec.Descriptor) (content.Writer, error) {
	ref := desc.Digest.String()
	s.removeBrokenIngest(ctx, ref, desc.Size)
	for {
		w, err := s.cs.Writer(ctx, content.WithRef(ref), content.WithDescriptor(desc))
		if err == nil {
			path := s.ingestDataPath(ref)
			preallocate(path, 0, desc.Size)
			return &reservedWriter{Writer: w, path: path}, nil
		}
		if errdefs.IsAlreadyExists(err) {
			return nil, err
		}
		if !errdefs.IsUnavailable(err) {
			return nil, fmt.Errorf("store: open blob %s for writing: %w", desc.Digest, err)
		}
		// containerd's own per-process lock: a writer of this store for
		// the same ref is still closing. Wait for it.
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("blob %s: waiting for ingest: %w", desc.Digest, ctx.Err())
		case <-time.After(lockPoll):
		}
	}
}

// reservedWriter is an ingest writer whose data file had its blocks
// reserved (preallocate). Closed without a commit, it gives back the blocks
// not written, so that a partial kept for a later resume holds only its
// bytes.
type reservedWriter struct {
	content.Writer
	path      string
	committed bool
}

func (w *reservedWriter) Commit(ctx context.Context, size int64, expected digest.Digest, opts ...content.Opt) error {
	err := w.Writer.Commit(ctx, size, expected, opts...)
	if err == nil {
		w.committed = true
	}
	return err
}

func (w *reservedWriter) Close() error {
	err := w.Writer.Close()
	if !w.committed {
		releasePreallocated(w.path)
	}
	return err
}

// ingestDir is the directory of containerd's local store for the ingest of
// ref; ingestDataPath its data file.
func (s *Store) ingestDir(ref string) string {
	return filepath.Join(s.root, "ingest", digest.FromString(ref).Encoded())
}

func (s *Store) ingestDataPath(ref string) string { return filepath.Join(s.ingestDir(ref), "data") }

// removeBrokenIngest removes the ingest of ref when containerd could not
// resume it (missing or unreadable metadata, or another total size); the
// local store would otherwise log and reuse the directory.
func (s *Store) removeBrokenIngest(ctx context.Context, ref string, size int64) {
	dir := s.ingestDir(ref)
	if _, err := os.Stat(dir); err != nil {
		return
	}
	st, err := s.cs.Status(ctx, ref)
	if err == nil && st.Ref == ref && (st.Total == 0 || st.Total == size) {
		return
	}
	_ = os.RemoveAll(dir)
}
