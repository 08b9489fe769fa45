package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	orascontent "oras.land/oras-go/v2/content"
)

// errCorruptPartial marks a digest mismatch of an ingest that was resumed
// from a partial left by an earlier attempt: the partial was wrong.
var errCorruptPartial = errors.New("the partial download kept from an earlier attempt was corrupt")

// errClosed is returned by Read after Close.
var errClosed = errors.New("read after close")

// ingestReader downloads one blob from a remote into an ingest of the store
// and hands every byte it writes to the reader's consumer as well: one read
// of the remote, two writers. It verifies size and digest while it streams;
// at the end of the blob it commits the ingest and only then returns io.EOF.
// A digest or size mismatch is returned from Read and the ingest is
// discarded. A download cut by the network is continued from the byte
// reached (by a Range request when the remote supports it, otherwise by a
// new fetch that skips what was received). Closing before the end keeps the
// partial ingest for a later resume.
//
// Read is not safe for concurrent use (like any io.Reader); Close may be
// called from another goroutine while a Read is in flight, as net/http does
// with request bodies.
type ingestReader struct {
	s      *Store
	ctx    context.Context // for store operations
	desc   ocispec.Descriptor
	remote orascontent.Fetcher

	mu       sync.Mutex // held by Read and by Close's clean-up
	fetchCtx context.Context
	cancel   context.CancelFunc // cancels fetchCtx: interrupts a blocked remote read
	rc       io.ReadCloser      // remote body positioned at off; nil: reopen
	w        content.Writer
	release  func() // releases the ingest lock; nil when the caller owns it
	off      int64  // bytes in the ingest
	start    int64  // offset the ingest had when this reader began
	fails    int    // cuts in a row without progress
	pending  error  // error returned by the remote along with data
	err      error  // sticky result: io.EOF after commit, or the failure
	done     bool   // writer committed, discarded or closed

	// buf holds bytes received and written to the ingest but not yet
	// handed to the consumer (buf[pos:end]), when the consumer reads in
	// small pieces (net/http sends a request body 32 KiB at a time):
	// the remote is then read, and the ingest written, a whole buffer at
	// a time rather than one small piece per system call.
	buf      *[]byte
	pos, end int

	// wb is the ingest's data file, opened once to start its writeback
	// every writebackChunk bytes (see startWriteback); nil until then.
	wb     *os.File
	wbDone int64 // bytes whose writeback was started
}

// writebackChunk is how many bytes are written to an ingest before their
// writeback to disk is started, so that the sync at commit (containerd's)
// finds little left to write.
const writebackChunk = 16 << 20

// minDirectRead is the smallest read served straight into the consumer's
// buffer; smaller ones go through ingestReader.buf.
const minDirectRead = 256 << 10

// newIngestReader returns a reader that continues the ingest in w at off.
// Its remote requests use fetchCtx, which cancel cancels (on Close, or when
// the reader is done); set r.rc to a body already positioned at off, or
// leave it nil for a new fetch at the first Read.
func (s *Store) newIngestReader(ctx, fetchCtx context.Context, cancel context.CancelFunc, remote orascontent.Fetcher, desc ocispec.Descriptor, w content.Writer, off int64, release func()) *ingestReader {
	return &ingestReader{
		s: s, ctx: ctx, desc: desc, remote: remote,
		fetchCtx: fetchCtx, cancel: cancel,
		w: w, release: release, off: off, start: off,
	}
}

// Read implements io.Reader.
func (r *ingestReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return 0, r.err
	}
	if r.done {
		return 0, errClosed
	}
	if r.pos < r.end {
		n := copy(p, (*r.buf)[r.pos:r.end])
		r.pos += n
		return n, nil
	}
	if r.off >= r.desc.Size {
		if err := r.finish(); err != nil {
			return 0, r.fail(err)
		}
		r.err = io.EOF
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if len(p) >= minDirectRead {
		return r.receive(p)
	}
	if r.buf == nil {
		if rest := r.desc.Size - r.off; rest < copyBufferSize {
			b := make([]byte, rest) // a small blob: no pooled megabyte
			r.buf = &b
		} else {
			r.buf = r.s.bufs.Get().(*[]byte)
		}
	}
	n, err := r.receive(*r.buf)
	if err != nil {
		return 0, err
	}
	r.pos, r.end = copy(p, (*r.buf)[:n]), n
	return r.pos, nil
}

// receive reads the next bytes of the blob from the remote into p (at most
// what is left of the blob), writes them to the ingest and returns how many
// (at least one) or the reader's failure. A cut download is continued.
func (r *ingestReader) receive(p []byte) (int, error) {
	if rest := r.desc.Size - r.off; int64(len(p)) > rest {
		p = p[:rest]
	}
	for {
		err := r.pending
		r.pending = nil
		if err == nil {
			if r.rc == nil {
				if err := r.reopen(); err != nil {
					if r.fetchCtx.Err() != nil {
						return 0, r.fail(r.stopped(err))
					}
					if err := r.cut(err); err != nil {
						return 0, r.fail(err)
					}
					continue
				}
			}
			var n int
			n, err = r.rc.Read(p)
			if n > 0 {
				if _, werr := r.w.Write(p[:n]); werr != nil {
					return 0, r.fail(fmt.Errorf("store: write blob %s: %w", r.desc.Digest, werr))
				}
				r.off += int64(n)
				r.fails = 0
				if r.off-r.wbDone >= writebackChunk {
					r.writeback()
				}
				if err != nil && !(err == io.EOF && r.off == r.desc.Size) {
					r.pending = err
				}
				return n, nil
			}
			if err == nil {
				continue
			}
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if r.fetchCtx.Err() != nil {
			return 0, r.fail(r.stopped(err))
		}
		if err := r.cut(err); err != nil {
			return 0, r.fail(err)
		}
	}
}

// writeback starts the writeback of what was written since the last call.
func (r *ingestReader) writeback() {
	if r.wb == nil {
		f, err := os.Open(r.s.ingestDataPath(r.desc.Digest.String()))
		if err != nil {
			r.wbDone = r.desc.Size // give up: the sync at commit does it
			return
		}
		r.wb = f
	}
	startWriteback(r.wb, r.wbDone, r.off-r.wbDone)
	r.wbDone = r.off
}

// stopped is the error of a download stopped by its context.
func (r *ingestReader) stopped(err error) error {
	if cause := context.Cause(r.fetchCtx); cause != nil {
		err = cause
	}
	return fmt.Errorf("blob %s: download stopped at byte %d of %d: %w", r.desc.Digest, r.off, r.desc.Size, err)
}

// cut handles a download cut at r.off: it drops the remote body and waits
// before the next attempt, or gives up after too many cuts in a row.
func (r *ingestReader) cut(cause error) error {
	if r.rc != nil {
		r.rc.Close()
		r.rc = nil
	}
	r.fails++
	if r.fails > r.s.retries {
		return fmt.Errorf("blob %s: download cut at byte %d of %d, %d attempts in a row without progress: %w",
			r.desc.Digest, r.off, r.desc.Size, r.fails, cause)
	}
	select {
	case <-r.fetchCtx.Done():
		return r.stopped(cause)
	case <-time.After(r.s.backoff << (r.fails - 1)):
	}
	return nil
}

// reopen fetches the blob again and positions it at r.off: by a Range
// request when the remote supports it, otherwise by skipping bytes.
func (r *ingestReader) reopen() error {
	rc, pos, err := openAt(r.fetchCtx, r.remote, r.desc, r.off)
	if err != nil {
		return err
	}
	if pos < r.off {
		if _, err := io.CopyN(io.Discard, rc, r.off-pos); err != nil {
			rc.Close()
			return err
		}
	}
	r.rc = rc
	return nil
}

// finish checks the complete ingest and commits it. On a mismatch the
// ingest is discarded.
func (r *ingestReader) finish() error {
	trailing := false
	if r.rc != nil {
		var b [1]byte
		for range 3 { // a reader may return (0, nil); do not spin forever
			n, err := r.rc.Read(b[:])
			if n > 0 {
				trailing = true
			}
			if n > 0 || err != nil {
				break
			}
		}
		r.rc.Close()
		r.rc = nil
	}
	if trailing {
		r.s.discard(r.ctx, r.w, r.desc)
		r.closeDone()
		return fmt.Errorf("blob %s: %w: the remote sent more than %d bytes", r.desc.Digest, ErrSizeMismatch, r.desc.Size)
	}
	if got := r.w.Digest(); got != r.desc.Digest {
		r.s.discard(r.ctx, r.w, r.desc)
		r.closeDone()
		if r.start > 0 {
			return fmt.Errorf("blob %s: %w: %w: content hashes to %s", r.desc.Digest, errCorruptPartial, ErrDigestMismatch, got)
		}
		return fmt.Errorf("blob %s: %w: the remote sent content that hashes to %s", r.desc.Digest, ErrDigestMismatch, got)
	}
	err := r.s.commit(r.ctx, r.w, r.desc)
	r.closeDone()
	if err != nil {
		return err
	}
	if p, perr := r.s.blobPath(r.desc.Digest); perr == nil {
		r.s.touch(p)
	}
	return nil
}

// fail records err as the reader's result, keeps the partial ingest (unless
// finish discarded it) and releases the lock.
func (r *ingestReader) fail(err error) error {
	r.err = err
	r.closeDone()
	return err
}

// closeDone closes the writer (keeping what it holds), the remote body and
// the lock. It may be called more than once.
func (r *ingestReader) closeDone() {
	if r.rc != nil {
		r.rc.Close()
		r.rc = nil
	}
	r.cancel()
	if !r.done {
		r.done = true
		r.w.Close() // no-op after Commit
		if r.off == 0 {
			// Nothing worth resuming: do not leave an empty ingest.
			_ = r.s.cs.Abort(r.ctx, r.desc.Digest.String())
		}
	}
	if r.release != nil {
		r.release()
		r.release = nil
	}
	if r.wb != nil {
		r.wb.Close()
		r.wb = nil
	}
	if r.buf != nil {
		if cap(*r.buf) == copyBufferSize {
			r.s.bufs.Put(r.buf)
		}
		r.buf, r.pos, r.end = nil, 0, 0
	}
}

// Close ends the download. With every byte received it verifies and commits
// like a read to the end would; otherwise the partial ingest is kept for a
// later resume. The lock is released either way.
func (r *ingestReader) Close() error {
	if !r.mu.TryLock() {
		// A Read is in flight: interrupt its remote read.
		r.cancel()
		r.mu.Lock()
	}
	defer r.mu.Unlock()
	if r.err == nil && !r.done && r.off == r.desc.Size {
		if err := r.finish(); err != nil {
			return r.fail(err)
		}
		r.err = io.EOF
		return nil
	}
	if r.err == nil {
		r.err = errClosed
	}
	r.closeDone()
	return nil
}
