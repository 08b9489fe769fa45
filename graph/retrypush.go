package graph

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// uploadRetries is how many times an upload cut by the destination is
// restarted (the registry client's own retries cannot replay a streamed body).
const uploadRetries = 5

// maxKeptManifestBytes bounds the manifest bytes a copy keeps in memory for
// tagging (beyond it, a manifest is read again from the source to be tagged).
const maxKeptManifestBytes = 4 << 20

// retryingStorage is the destination side of a copy. It restarts an upload
// that the destination cut or refused with a transient error (5xx, 429, a
// reset connection): the content is opened again through refetch — from the
// local store when there is one, or resumed where its download stopped — and
// pushed again, with backoff. A failure of the source itself (a full store,
// a corrupt blob) is returned as it is, not retried.
//
// It also records the manifests and indexes it pushed, with their bytes
// (up to maxKeptManifestBytes in all), so that tags can be pushed with the
// bytes in hand and without asking first what they point at.
//
// Whether dst has a manifest listed in tagAs is asked of that tag (one HEAD
// that answers for both); when it is also in pushByTag, it is pushed by that
// tag (one PUT that stores the manifest and points the tag at it). See
// tagOnPush.
type retryingStorage struct {
	content.Storage
	refetch func(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error)
	backoff time.Duration // first wait; doubles each retry

	// Set before the copy starts, read-only during it.
	tagAs     map[digest.Digest]string // manifest -> its tag, asked for instead of the digest
	pushByTag map[digest.Digest]bool   // manifests pushed by their tagAs tag
	byTag     registry.ReferencePusher // pushes by tag (set with tagAs)
	resolver  content.Resolver         // resolves tags (set with tagAs)
	virtual   digest.Digest            // a root that is never at the destination
	plan      *Plan                    // what a plan just found at the destination (CopyOptions.Plan), or nil
	// known holds verified manifest bytes by digest (Graph.manifests and
	// Graph.extra; either may be nil): a manifest pushed with these bytes
	// is compared with them rather than hashed, and kept without a copy.
	known [2]map[digest.Digest][]byte
	// local says that the destination is the local store (Gather): a
	// manifest goes straight to it, neither restarted nor recorded.
	local bool

	mu     sync.Mutex
	pushed map[digest.Digest][]byte // manifests pushed; nil bytes once over the budget
	kept   int64                    // bytes held in pushed
	tagged map[digest.Digest]string // manifest -> tag known to point at it (pushed with it, or found)
}

// Exists reports whether the destination has desc. A manifest listed in
// tagAs is asked for by its tag: when the tag points at it, the manifest and
// its tag are both there (and the tag is recorded as done); when the tag is
// missing or points elsewhere, the manifest is pushed again (by the tag, or
// by digest and then tagged), which writes what tagging it would have
// written. The virtual root of a copy is never asked for.
func (s *retryingStorage) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	if s.virtual != "" && desc.Digest == s.virtual {
		return false, nil
	}
	if present, ok := s.plan.answered(desc.Digest, s.tagAs[desc.Digest]); ok {
		if tag := s.tagAs[desc.Digest]; present && tag != "" {
			s.noteTagged(desc.Digest, tag)
		}
		return present, nil
	}
	if tag := s.tagAs[desc.Digest]; tag != "" && s.resolver != nil {
		cur, err := s.resolver.Resolve(ctx, tag)
		switch {
		case err == nil && cur.Digest == desc.Digest:
			s.noteTagged(desc.Digest, tag)
			return true, nil
		case err == nil || errors.Is(err, errdef.ErrNotFound):
			return false, nil
		}
		// Any other answer: ask for the manifest itself, as without a tag.
	}
	return s.Storage.Exists(ctx, desc)
}

func (s *retryingStorage) Push(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	if (isImageManifest(desc.MediaType) || isIndex(desc.MediaType)) && desc.Size <= maxMetadataBytes {
		return s.pushManifest(ctx, desc, r)
	}
	return s.pushBlob(ctx, desc, r)
}

// pushManifest reads a manifest whole (to its end, so a caching source
// commits it and a WrapReader sees every byte), pushes it, with restarts
// from the same bytes, and records it. Into the local store (local), a
// manifest is pushed once and not recorded: a local push is not worth
// restarting (see localFault), and nothing is tagged afterwards.
func (s *retryingStorage) pushManifest(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	body, err := s.readManifest(desc, r)
	if err != nil {
		return err
	}
	if s.local {
		return s.Storage.Push(ctx, desc, bytes.NewReader(body))
	}
	tag := ""
	if s.pushByTag[desc.Digest] && s.byTag != nil {
		tag = s.tagAs[desc.Digest]
	}
	push := func() error {
		if tag != "" {
			return s.byTag.PushReference(ctx, desc, bytes.NewReader(body), tag)
		}
		return s.Storage.Push(ctx, desc, bytes.NewReader(body))
	}
	err = push()
	wait := s.backoff
	for attempt := 0; attempt < uploadRetries && err != nil && transientPushError(err) && ctx.Err() == nil; attempt++ {
		if werr := sleep(ctx, wait); werr != nil {
			return werr
		}
		wait *= 2
		err = push()
	}
	if err != nil {
		if tag != "" {
			return fmt.Errorf("push %s as %s: %w", desc.Digest, tag, err)
		}
		return err
	}
	if s.knownBody(desc) != nil {
		s.record(desc.Digest, nil) // manifest finds the bytes in known
	} else {
		s.record(desc.Digest, body)
	}
	if tag != "" {
		s.noteTagged(desc.Digest, tag)
	}
	return nil
}

// pushBlob pushes a blob streamed from r, restarting it from refetch.
func (s *retryingStorage) pushBlob(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	src := watchSource(r)
	err := s.Storage.Push(ctx, desc, src.reader())
	wait := s.backoff
	for attempt := 0; attempt < uploadRetries && err != nil && ctx.Err() == nil; attempt++ {
		if serr := src.failure(); serr != nil {
			// The source failed, not the destination: retry only what
			// a new download may cure (a cut connection).
			if !transientPushError(serr) {
				return serr
			}
		} else if !transientPushError(err) {
			return err
		}
		// The reader given to us may still hold the content's download
		// open (a store keeps the partial and releases it on Close).
		if c, ok := r.(io.Closer); ok {
			c.Close()
		}
		if werr := sleep(ctx, wait); werr != nil {
			return werr
		}
		wait *= 2
		rc, ferr := s.refetch(ctx, desc)
		if ferr != nil {
			// The cause leads; it names the blob and where it was read.
			return fmt.Errorf("%w (while restarting the upload of %s after: %v)", ferr, desc.Digest, err)
		}
		r, src = rc, watchSource(rc)
		err = s.Storage.Push(ctx, desc, src.reader())
		rc.Close()
	}
	if serr := src.failure(); err != nil && serr != nil {
		return serr
	}
	return err
}

// knownBody returns the verified bytes of the manifest desc held in known,
// or nil.
func (s *retryingStorage) knownBody(desc ocispec.Descriptor) []byte {
	for _, m := range s.known {
		if b, ok := m[desc.Digest]; ok && int64(len(b)) == desc.Size {
			return b
		}
	}
	return nil
}

// readManifest reads r, the content of the manifest desc, to its end and
// returns its bytes, failing with ErrDigestMismatch when they are not
// desc's. Bytes known verified (knownBody) are compared with r's as they
// stream, without a hash or a copy, and returned; others are read into
// memory and hashed.
func (s *retryingStorage) readManifest(desc ocispec.Descriptor, r io.Reader) ([]byte, error) {
	if known := s.knownBody(desc); known != nil {
		cmp := &sameBytes{want: known}
		if _, err := io.Copy(cmp, io.LimitReader(r, desc.Size+1)); err != nil && !errors.Is(err, errNotSame) {
			return nil, err
		}
		if cmp.differ || cmp.n != desc.Size {
			return nil, fmt.Errorf("manifest %s: %w: the bytes read differ from those verified", desc.Digest, ErrDigestMismatch)
		}
		return known, nil
	}
	body, err := io.ReadAll(io.LimitReader(r, desc.Size+1))
	if err != nil {
		return nil, err
	}
	if got := digest.FromBytes(body); int64(len(body)) != desc.Size || got != desc.Digest {
		return nil, fmt.Errorf("manifest %s: %w: got %d bytes hashing to %s", desc.Digest, ErrDigestMismatch, len(body), got)
	}
	return body, nil
}

// errNotSame stops a sameBytes copy at the first difference.
var errNotSame = errors.New("bytes differ")

// sameBytes is a writer that checks that what is written is want, in order.
type sameBytes struct {
	want   []byte
	n      int64 // bytes written so far
	differ bool
}

func (w *sameBytes) Write(p []byte) (int, error) {
	if w.n+int64(len(p)) > int64(len(w.want)) || !bytes.Equal(p, w.want[w.n:w.n+int64(len(p))]) {
		w.differ = true
		return 0, errNotSame
	}
	w.n += int64(len(p))
	return len(p), nil
}

// record notes that the manifest d was pushed, keeping its bytes while the
// budget lasts.
func (s *retryingStorage) record(d digest.Digest, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pushed == nil {
		s.pushed = make(map[digest.Digest][]byte)
	}
	if _, ok := s.pushed[d]; ok {
		return
	}
	if s.kept+int64(len(body)) > maxKeptManifestBytes {
		body = nil
	}
	s.pushed[d] = body
	s.kept += int64(len(body))
}

// noteTagged records that tag points at the manifest d at the destination.
func (s *retryingStorage) noteTagged(d digest.Digest, tag string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tagged == nil {
		s.tagged = make(map[digest.Digest]string)
	}
	s.tagged[d] = tag
}

// taggedAs returns the tag known to point at the manifest d at the
// destination (pushed with it, or found there), or "".
func (s *retryingStorage) taggedAs(d digest.Digest) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tagged[d]
}

// wasPushed reports whether this copy pushed the manifest d, and returns
// its bytes when they were kept.
func (s *retryingStorage) wasPushed(d digest.Digest) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	body, ok := s.pushed[d]
	return body, ok
}

// manifest returns the bytes of the manifest desc: those kept when it was
// pushed, or else read from the source and verified.
func (s *retryingStorage) manifest(ctx context.Context, desc ocispec.Descriptor) ([]byte, error) {
	if body, _ := s.wasPushed(desc.Digest); body != nil {
		return body, nil
	}
	if body := s.knownBody(desc); body != nil {
		return body, nil
	}
	if desc.Size > maxMetadataBytes {
		return nil, fmt.Errorf("manifest %s is %d bytes: %w", desc.Digest, desc.Size, ErrTooLarge)
	}
	rc, err := s.refetch(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	body, err := io.ReadAll(io.LimitReader(rc, desc.Size+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) != desc.Size || digest.FromBytes(body) != desc.Digest {
		return nil, fmt.Errorf("manifest %s: %w", desc.Digest, ErrDigestMismatch)
	}
	return body, nil
}

// uploadsOf returns the retryingStorage behind blobs, or nil.
func uploadsOf(blobs any) *retryingStorage {
	switch s := blobs.(type) {
	case *retryingStorage:
		return s
	case retryingMounter:
		return s.retryingStorage
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// sourceWatch records the first error the source reader returned, so that
// a failed upload can tell a source at fault from the destination.
type sourceWatch struct {
	r   io.Reader
	err error
}

// watchSource wraps r to record its failure. A file (a blob committed in
// the local store) is not wrapped, so that it can be sent with sendfile; its
// rare read errors are local and never retried (see localFault).
func watchSource(r io.Reader) *sourceWatch {
	return &sourceWatch{r: r}
}

// reader is what is given to the destination's Push.
func (w *sourceWatch) reader() io.Reader {
	if _, ok := w.r.(*os.File); ok {
		return w.r
	}
	return w
}

func (w *sourceWatch) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if err != nil && err != io.EOF && w.err == nil {
		w.err = err
	}
	return n, err
}

// failure is the source's error, nil when it did not fail.
func (w *sourceWatch) failure() error {
	if w == nil {
		return nil
	}
	return w.err
}

// transientPushError reports whether an upload failed for a reason worth
// restarting it: the registry answered 429 or 5xx, or the connection broke.
// Content errors (digest mismatch), local file-system errors (a full disk)
// and cancellation are not transient.
func transientPushError(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, ErrDigestMismatch) || errors.Is(err, content.ErrMismatchedDigest) || errors.Is(err, content.ErrTrailingData) ||
		localFault(err) {
		return false
	}
	var resp *errcode.ErrorResponse
	if errors.As(err, &resp) {
		return resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr)
}

// localFault reports whether err comes from the local file system (a full
// or read-only store, a failing disk): restarting an upload cannot cure it.
func localFault(err error) bool {
	var pe *fs.PathError
	var le *os.LinkError
	return errors.As(err, &pe) || errors.As(err, &le) ||
		errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EIO)
}

// retryingMounter keeps the destination's cross-repository mount visible to
// oras-go (it finds it by type assertion) behind retryingStorage.
type retryingMounter struct {
	*retryingStorage
	mounter registry.Mounter
}

func (m retryingMounter) Mount(ctx context.Context, desc ocispec.Descriptor, fromRepo string, getContent func() (io.ReadCloser, error)) error {
	return m.mounter.Mount(ctx, desc, fromRepo, getContent)
}

// withUploadRetries wraps dst so that uploads it cuts are restarted and the
// manifests pushed are recorded for tagging.
func withUploadRetries(dst content.Storage, refetch func(context.Context, ocispec.Descriptor) (io.ReadCloser, error)) content.Storage {
	rs := &retryingStorage{Storage: dst, refetch: refetch, backoff: 200 * time.Millisecond}
	if m, ok := dst.(registry.Mounter); ok {
		return retryingMounter{retryingStorage: rs, mounter: m}
	}
	return rs
}
