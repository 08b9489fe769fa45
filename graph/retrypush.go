package graph

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// uploadRetries is how many times an upload cut by the destination is
// restarted (the registry client's own retries cannot replay a streamed body).
const uploadRetries = 5

// retryingStorage restarts an upload that the destination cut or refused
// with a transient error (5xx, 429, a reset connection): the content is
// opened again through refetch — from the local store when there is one, or
// resumed where its download stopped — and pushed again, with backoff.
type retryingStorage struct {
	content.Storage
	refetch func(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error)
	backoff time.Duration // first wait; doubles each retry
}

func (s *retryingStorage) Push(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	err := s.Storage.Push(ctx, desc, r)
	wait := s.backoff
	for attempt := 0; attempt < uploadRetries && err != nil && transientPushError(err) && ctx.Err() == nil; attempt++ {
		// The reader given to us may still hold the content's download
		// open (a store keeps the partial and releases it on Close).
		if c, ok := r.(io.Closer); ok {
			c.Close()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait *= 2
		var rc io.ReadCloser
		rc, err = s.refetch(ctx, desc)
		if err != nil {
			return fmt.Errorf("restarting upload of %s: %w", desc.Digest, err)
		}
		r = rc
		err = s.Storage.Push(ctx, desc, rc)
		rc.Close()
	}
	return err
}

// transientPushError reports whether an upload failed for a reason worth
// restarting it: the registry answered 429 or 5xx, or the connection broke.
// Content errors (digest mismatch) and cancellation are not transient.
func transientPushError(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrDigestMismatch) {
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

// retryingMounter keeps the destination's cross-repository mount visible to
// oras-go (it finds it by type assertion) behind retryingStorage.
type retryingMounter struct {
	*retryingStorage
	mounter registry.Mounter
}

func (m retryingMounter) Mount(ctx context.Context, desc ocispec.Descriptor, fromRepo string, getContent func() (io.ReadCloser, error)) error {
	return m.mounter.Mount(ctx, desc, fromRepo, getContent)
}

// withUploadRetries wraps dst so that uploads it cuts are restarted.
func withUploadRetries(dst content.Storage, refetch func(context.Context, ocispec.Descriptor) (io.ReadCloser, error)) content.Storage {
	rs := &retryingStorage{Storage: dst, refetch: refetch, backoff: 200 * time.Millisecond}
	if m, ok := dst.(registry.Mounter); ok {
		return retryingMounter{retryingStorage: rs, mounter: m}
	}
	return rs
}
