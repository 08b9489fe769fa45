package store

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	orascontent "oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry"
)

// CachedTarget is a read-only target that puts a [Store] in front of a remote
// repository (or any read-only target): content is served by digest from the
// store when it is committed there, and otherwise downloaded into the store
// while it is served. Tags are always resolved at the remote. It is safe for
// concurrent use, as safe as the remote it wraps.
type CachedTarget struct {
	s      *Store
	remote oras.ReadOnlyTarget
}

// Statically pin what a CachedTarget satisfies.
var (
	_ oras.ReadOnlyTarget       = (*CachedTarget)(nil)
	_ registry.ReferenceFetcher = (*CachedTarget)(nil)
)

// Cache returns remote with the store as a caching, resumable layer in front
// of it. See [CachedTarget.Fetch] for how a blob is downloaded.
func (s *Store) Cache(remote oras.ReadOnlyTarget) *CachedTarget {
	return &CachedTarget{s: s, remote: remote}
}

// Remote returns the target the cache fronts, for what the cache does not
// offer (referrers, tag listing).
func (c *CachedTarget) Remote() oras.ReadOnlyTarget { return c.remote }

// Resolve resolves reference at the remote, never from the store.
func (c *CachedTarget) Resolve(ctx context.Context, reference string) (ocispec.Descriptor, error) {
	return c.remote.Resolve(ctx, reference)
}

// Exists reports whether desc is committed in the store or, if not, present
// at the remote.
func (c *CachedTarget) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	if ok, err := c.s.Exists(ctx, desc); err != nil || ok {
		return ok, err
	}
	return c.remote.Exists(ctx, desc)
}

// Fetch returns the content of desc. A blob committed in the store is read
// from there (and its use recorded); the remote is not asked.
//
// Otherwise the blob is downloaded into the store, keyed by its digest, while
// the returned reader hands the same bytes to the caller, so a copy to a
// destination costs one read of the remote. A small blob (256 KiB or less:
// manifests, configs) is read whole, verified and committed before Fetch
// returns, then served from memory. Size and digest are verified as
// the bytes stream: the ingest is committed when the last byte has been read,
// before the reader returns io.EOF; a mismatch is returned by Read (so an
// upload fed by it fails) and nothing is committed. Closing the reader before
// the end keeps the partial download. A download cut by the network is
// continued from the byte reached, by a Range request when the remote
// supports it, up to [DefaultRetries] times in a row without progress.
//
// A partial download left by an earlier attempt (in this or another process)
// is continued from its last byte: the rest is downloaded into the store by
// a Range request, verified and committed, and then the blob is served from
// the store. The caller only ever sees verified bytes from a resumed
// download, and a partial that turns out to be corrupt is discarded and the
// blob downloaded once more from byte 0. When the remote cannot seek or
// refuses the Range request, the partial is dropped and the blob fetched whole.
//
// A blob that another goroutine or process is downloading is waited for
// (until ctx ends) and then read from the store.
func (c *CachedTarget) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	return c.s.fetchThrough(ctx, c.remote, desc, nil)
}

// Verifies reports whether rc, a reader returned by c's Fetch or
// FetchReference for desc, checks its content itself, so that a caller need
// not hash the bytes again: it is true for a blob committed in the store
// (verified at commit), for a download into the store and for a download
// read verified without being stored. Their Read that reaches the end of
// content other than desc's fails with [ErrDigestMismatch] or
// [ErrSizeMismatch] instead of returning io.EOF. It is false for any other
// reader.
func (c *CachedTarget) Verifies(desc ocispec.Descriptor, rc io.Reader) bool {
	return c.s.Verifies(desc, rc)
}

// FetchReference resolves reference at the remote and returns its
// descriptor and content.
//
// A digest reference whose blob is committed in the store costs one request
// without a body: the remote is asked whether it has the manifest (and its
// media type) with Resolve, and the content is read from the store. The
// question is kept because presence at this repository matters to callers
// (imgpkg looks an image up in the bundle's repository first); the bytes
// are not fetched again.
//
// Otherwise, with a remote that fetches a reference in one request (a
// registry), the content is stored while it is read, like Fetch; without
// such a remote it is Resolve followed by Fetch. A tag is always resolved at
// the remote; when the store already has the content it names, the (small)
// response is read to its end and dropped, so that the connection is kept,
// and the content is served from the store.
func (c *CachedTarget) FetchReference(ctx context.Context, reference string) (ocispec.Descriptor, io.ReadCloser, error) {
	if d, err := digest.Parse(reference); err == nil {
		if ok, _ := c.s.committed(d); ok {
			desc, err := c.remote.Resolve(ctx, reference)
			if err != nil {
				return ocispec.Descriptor{}, nil, err
			}
			if desc.Digest == d {
				if f, err := c.s.openBlob(desc); err == nil {
					return desc, f, nil
				}
			}
			// Another digest (the caller checks) or the blob went
			// away (pruned): fetch as if the store did not have it.
		}
	}
	rf, ok := c.remote.(registry.ReferenceFetcher)
	if !ok {
		desc, err := c.remote.Resolve(ctx, reference)
		if err != nil {
			return ocispec.Descriptor{}, nil, err
		}
		rc, err := c.Fetch(ctx, desc)
		return desc, rc, err
	}
	desc, body, err := rf.FetchReference(ctx, reference)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	rc, err := c.s.fetchThrough(ctx, c.remote, desc, body)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	return desc, rc, nil
}

// fetchThrough serves desc from the store, downloading it from remote
// first if needed. body, when not nil, is an already opened response for
// desc from byte 0; fetchThrough takes ownership of it.
func (s *Store) fetchThrough(ctx context.Context, remote orascontent.Fetcher, desc ocispec.Descriptor, body io.ReadCloser) (io.ReadCloser, error) {
	closeBody := func() {
		if body != nil {
			body.Close()
			body = nil
		}
	}
	if err := validate(desc); err != nil {
		closeBody()
		return nil, err
	}
	if f, err := s.openBlob(desc); err == nil || !errors.Is(err, ErrNotFound) {
		if err == nil && body != nil {
			dropBody(body, desc.Size)
			body = nil
		}
		closeBody()
		return f, err
	}
	if desc.Size <= smallBlobMax {
		// Small blobs skip the cross-process ingest lock, but within this
		// process one download per digest is enough: a second caller
		// waits for the first, then reads the committed blob. A caller
		// with a response already open does not wait (it reads that).
		release, waited, err := s.claimSmall(ctx, desc.Digest, body == nil)
		if err != nil {
			closeBody()
			return nil, err
		}
		defer release()
		if waited {
			if f, err := s.openBlob(desc); err == nil || !errors.Is(err, ErrNotFound) {
				return f, err
			}
		}
		return s.fetchSmall(ctx, remote, desc, body)
	}
	var lock *ingestLock
	if body != nil {
		// Do not keep a response open while waiting: if another
		// download holds the lock, read this one verified but unstored.
		var ok bool
		var err error
		if lock, ok, err = s.tryLockIngest(desc.Digest); err != nil || !ok {
			return verifyOnly(desc, body), nil
		}
	} else {
		var err error
		if lock, err = s.lockIngest(ctx, desc.Digest); err != nil {
			return nil, err
		}
	}
	// Committed while we waited for the lock?
	if f, err := s.openBlob(desc); err == nil || !errors.Is(err, ErrNotFound) {
		lock.release()
		closeBody()
		return f, err
	}
	rc, err := s.download(ctx, remote, desc, lock, body)
	if err != nil {
		lock.release()
		return nil, err
	}
	return rc, nil
}

// download ingests desc from remote; the caller holds the ingest lock, which
// download hands to the returned reader or releases itself on success, and
// the caller releases on error.
func (s *Store) download(ctx context.Context, remote orascontent.Fetcher, desc ocispec.Descriptor, lock *ingestLock, body io.ReadCloser) (io.ReadCloser, error) {
	closeBody := func() {
		if body != nil {
			body.Close()
			body = nil
		}
	}
	w, err := s.openWriter(ctx, desc)
	if errdefs.IsAlreadyExists(err) {
		closeBody()
		lock.release()
		return s.openBlob(desc)
	}
	if err != nil {
		closeBody()
		return nil, err
	}
	st, err := w.Status()
	if err != nil || st.Offset > desc.Size || (st.Offset > 0 && body != nil) {
		// Unknown state, a partial longer than the blob, or a response
		// already open at byte 0: start from 0.
		if err := w.Truncate(0); err != nil {
			w.Close()
			closeBody()
			return nil, fmt.Errorf("blob %s: %w", desc.Digest, err)
		}
		st.Offset = 0
	}
	// Remote requests of the returned reader (including a body opened by
	// resume) use fetchCtx, so that Close can interrupt a blocked read.
	fetchCtx, cancel := context.WithCancel(ctx)
	if st.Offset > 0 {
		done, nw, rc, err := s.resume(ctx, fetchCtx, remote, desc, w, st.Offset)
		if err != nil {
			cancel()
			return nil, err
		}
		if done {
			cancel()
			lock.release()
			return s.openBlob(desc)
		}
		w, body = nw, rc
	}
	r := s.newIngestReader(ctx, fetchCtx, cancel, remote, desc, w, 0, lock.release)
	if body == nil {
		// Open the remote now, so that a missing blob or a refused
		// request is an error of Fetch rather than of the first Read.
		if err := r.reopen(); err != nil {
			r.closeDone()
			return nil, err
		}
	} else {
		r.rc = body
	}
	return r, nil
}

// resume continues the partial ingest in w (off bytes) from the remote,
// verifies and commits it. It returns done=true when the blob is committed.
// Otherwise, without error, it returns a writer at offset 0 for a download
// from byte 0, and possibly a remote body already open at byte 0: the
// partial was corrupt (discarded, a new writer opened), or the remote could
// not continue it (w truncated). On error, w is closed.
func (s *Store) resume(ctx, fetchCtx context.Context, remote orascontent.Fetcher, desc ocispec.Descriptor, w content.Writer, off int64) (bool, content.Writer, io.ReadCloser, error) {
	rctx, cancel := context.WithCancel(fetchCtx)
	defer cancel()
	r := s.newIngestReader(ctx, rctx, cancel, remote, desc, w, off, nil)
	if off < desc.Size {
		rc, pos, err := openAt(fetchCtx, remote, desc, off)
		if err != nil {
			r.closeDone()
			return false, nil, nil, err
		}
		if pos != off {
			// The remote cannot continue: start over, with this
			// body when it starts at byte 0.
			if pos != 0 {
				rc.Close()
				rc = nil
			}
			if err := s.truncate(w, desc); err != nil {
				if rc != nil {
					rc.Close()
				}
				return false, nil, nil, err
			}
			return false, w, rc, nil
		}
		r.rc = rc
	}
	err := s.drain(r)
	if err == nil {
		return true, nil, nil, nil
	}
	if !errors.Is(err, errCorruptPartial) {
		return false, nil, nil, err
	}
	// The partial was wrong and has been discarded: download again from
	// byte 0 into a new ingest (the caller still holds the lock).
	nw, err := s.openWriter(ctx, desc)
	if err != nil {
		return false, nil, nil, err
	}
	return false, nw, nil, nil
}

// truncate empties the ingest in w; on error w is closed.
func (s *Store) truncate(w content.Writer, desc ocispec.Descriptor) error {
	if err := w.Truncate(0); err != nil {
		w.Close()
		return fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	return nil
}

// maxDrainedBody is the largest response dropBody reads to its end.
const maxDrainedBody = 1 << 20

// dropBody closes a response that is not needed. A small one (a manifest)
// is read to its end first, so that the HTTP client keeps the connection
// for the next request instead of closing it.
func dropBody(body io.ReadCloser, size int64) {
	if size <= maxDrainedBody {
		_, _ = io.Copy(io.Discard, io.LimitReader(body, size+1))
	}
	body.Close()
}

// verifyOnly reads body verified against desc without storing it.
func verifyOnly(desc ocispec.Descriptor, body io.ReadCloser) io.ReadCloser {
	return &verifyingReader{desc: desc, body: body, vr: orascontent.NewVerifyReader(body, desc)}
}

type verifyingReader struct {
	desc ocispec.Descriptor
	body io.ReadCloser
	vr   *orascontent.VerifyReader
}

func (r *verifyingReader) Read(p []byte) (int, error) {
	n, err := r.vr.Read(p)
	if err == io.EOF {
		if verr := r.vr.Verify(); verr != nil {
			kind := ErrSizeMismatch
			if errors.Is(verr, orascontent.ErrMismatchedDigest) {
				kind = ErrDigestMismatch
			}
			return n, fmt.Errorf("blob %s: %w: %w", r.desc.Digest, kind, verr)
		}
	}
	if err == io.ErrUnexpectedEOF {
		err = fmt.Errorf("blob %s: %w: %w", r.desc.Digest, ErrSizeMismatch, err)
	}
	return n, err
}

func (r *verifyingReader) Close() error { return r.body.Close() }

// claimSmall makes the caller the one download of small blob d in this
// process. When another download of d is in flight and wait is true, it
// waits for that one to end first (waited reports it); when wait is false
// it does not wait and claims nothing. release must be called once the
// caller's download has ended.
func (s *Store) claimSmall(ctx context.Context, d digest.Digest, wait bool) (release func(), waited bool, err error) {
	for {
		s.smallMu.Lock()
		ch, busy := s.smallInFlight[d]
		if !busy {
			if s.smallInFlight == nil {
				s.smallInFlight = make(map[digest.Digest]chan struct{})
			}
			mine := make(chan struct{})
			s.smallInFlight[d] = mine
			s.smallMu.Unlock()
			return func() {
				s.smallMu.Lock()
				delete(s.smallInFlight, d)
				s.smallMu.Unlock()
				close(mine)
			}, waited, nil
		}
		s.smallMu.Unlock()
		if !wait {
			return func() {}, false, nil
		}
		select {
		case <-ch:
			waited = true
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}
