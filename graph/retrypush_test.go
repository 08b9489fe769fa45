package graph

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// flakyStorage fails the first failures pushes with err, after reading a
// few bytes of the body as a cut upload would.
type flakyStorage struct {
	content.Storage
	failures int
	err      error
	pushes   int
}

func (f *flakyStorage) Push(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	f.pushes++
	if f.pushes <= f.failures {
		io.CopyN(io.Discard, r, 3)
		return f.err
	}
	return f.Storage.Push(ctx, desc, r)
}

func TestUploadRestartedAfterTransientErrors(t *testing.T) {
	ctx := context.Background()
	data := []byte("a blob whose upload the registry cuts")
	desc := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(data), Size: int64(len(data))}
	cases := []struct {
		name       string
		err        error
		failures   int
		wantOK     bool
		wantPushes int
	}{
		{"503 twice", &errcode.ErrorResponse{StatusCode: http.StatusServiceUnavailable}, 2, true, 3},
		{"reset", &resetError{}, 1, true, 2},
		{"429", &errcode.ErrorResponse{StatusCode: http.StatusTooManyRequests}, 1, true, 2},
		{"budget exhausted", &errcode.ErrorResponse{StatusCode: http.StatusBadGateway}, uploadRetries + 1, false, uploadRetries + 1},
		{"401 is not transient", &errcode.ErrorResponse{StatusCode: http.StatusUnauthorized}, 1, false, 1},
		{"digest mismatch is not transient", ErrDigestMismatch, 1, false, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inner := &flakyStorage{Storage: memory.New(), failures: c.failures, err: c.err}
			refetches := 0
			dst := withUploadRetries(inner, func(context.Context, ocispec.Descriptor) (io.ReadCloser, error) {
				refetches++
				return io.NopCloser(bytes.NewReader(data)), nil
			})
			dst.(*retryingStorage).backoff = 0
			err := dst.Push(ctx, desc, bytes.NewReader(data))
			if (err == nil) != c.wantOK {
				t.Fatalf("Push: %v, want success %v", err, c.wantOK)
			}
			if inner.pushes != c.wantPushes || refetches != c.wantPushes-1 {
				t.Errorf("pushes %d, refetches %d; want %d and %d", inner.pushes, refetches, c.wantPushes, c.wantPushes-1)
			}
			if c.wantOK {
				if ok, _ := inner.Storage.Exists(ctx, desc); !ok {
					t.Error("blob not at the destination after the restarted upload")
				}
			} else if !errors.Is(err, c.err) {
				t.Errorf("error %v does not wrap %v", err, c.err)
			}
		})
	}
}

// resetError is a net.Error standing for a connection reset.
type resetError struct{}

func (*resetError) Error() string   { return "connection reset by peer" }
func (*resetError) Timeout() bool   { return false }
func (*resetError) Temporary() bool { return true }
