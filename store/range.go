package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	orascontent "oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// RangeFetcher is an optional interface of the remote given to
// [Store.Cache]: it fetches a blob from an offset in one request (HTTP Range).
// It returns the body and the offset it starts at, which is 0 when the
// remote sent the whole blob instead. oras-go's *remote.Repository is served
// this way without implementing it; other remotes are opened with Fetch and
// sought when their reader can seek, which costs what the first response
// sends before it is dropped.
type RangeFetcher interface {
	FetchRange(ctx context.Context, desc ocispec.Descriptor, offset int64) (body io.ReadCloser, start int64, err error)
}

// manifestMediaTypes are the media types oras-go fetches from /manifests/.
var manifestMediaTypes = []string{
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	ocispec.MediaTypeImageManifest,
	ocispec.MediaTypeImageIndex,
	"application/vnd.oci.artifact.manifest.v1+json",
}

// openAt opens desc at remote positioned at off, or at 0 when the remote
// cannot start elsewhere; it returns the body and its position.
func openAt(ctx context.Context, src orascontent.Fetcher, desc ocispec.Descriptor, off int64) (io.ReadCloser, int64, error) {
	if off > 0 {
		switch r := src.(type) {
		case RangeFetcher:
			return r.FetchRange(ctx, desc, off)
		case *remote.Repository:
			if !isManifest(r, desc) {
				rc, pos, err := fetchRange(ctx, r, desc, off)
				if err == nil || errors.Is(err, errdef.ErrNotFound) || ctx.Err() != nil {
					return rc, pos, err
				}
				// Anything else (a status the registry should not
				// send for a Range): fetch the whole blob.
				rc, err = src.Fetch(ctx, desc)
				return rc, 0, err
			}
		}
	}
	rc, err := src.Fetch(ctx, desc)
	if err != nil || off == 0 {
		return rc, 0, err
	}
	sk, ok := rc.(io.Seeker)
	if !ok {
		return rc, 0, nil
	}
	// Seeking to the end first drops the body without a request (for
	// oras-go's seekable HTTP reader), so little of it is transferred
	// for nothing; the seek to off then re-issues the GET with a Range.
	if _, err := sk.Seek(0, io.SeekEnd); err == nil {
		if pos, err := sk.Seek(off, io.SeekStart); err == nil && pos == off {
			return rc, off, nil
		}
	}
	// Range refused, or the reader is in an unknown state: start over.
	rc.Close()
	rc, err = src.Fetch(ctx, desc)
	return rc, 0, err
}

func isManifest(r *remote.Repository, desc ocispec.Descriptor) bool {
	types := r.ManifestMediaTypes
	if len(types) == 0 {
		types = manifestMediaTypes
	}
	return slices.Contains(types, desc.MediaType)
}

// fetchRange fetches a blob of an oras-go remote repository from off with
// one GET carrying a Range header, through the repository's client (and so
// its authentication). A registry that ignores the Range sends the whole
// blob, returned at position 0.
func fetchRange(ctx context.Context, r *remote.Repository, desc ocispec.Descriptor, off int64) (io.ReadCloser, int64, error) {
	ref := r.Reference
	ref.Reference = desc.Digest.String()
	ctx = auth.AppendRepositoryScope(ctx, ref, auth.ActionPull)
	scheme := "https"
	if r.PlainHTTP {
		scheme = "http"
	}
	url := fmt.Sprintf("%s://%s/v2/%s/blobs/%s", scheme, ref.Host(), ref.Repository, ref.Reference)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, desc.Size-1))
	var client remote.Client = auth.DefaultClient
	if r.Client != nil {
		client = r.Client
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		var start, end, total int64
		_, err := fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-%d/%d", &start, &end, &total)
		if err == nil && start == off && end == desc.Size-1 && (resp.ContentLength == -1 || resp.ContentLength == desc.Size-off) {
			return resp.Body, off, nil
		}
		resp.Body.Close()
		return nil, 0, fmt.Errorf("GET %s with Range from %d: unexpected Content-Range %q", url, off, resp.Header.Get("Content-Range"))
	case http.StatusOK:
		if resp.ContentLength != -1 && resp.ContentLength != desc.Size {
			resp.Body.Close()
			return nil, 0, fmt.Errorf("GET %s: Content-Length %d, want %d", url, resp.ContentLength, desc.Size)
		}
		return resp.Body, 0, nil
	case http.StatusNotFound:
		resp.Body.Close()
		return nil, 0, fmt.Errorf("%s: %w", desc.Digest, errdef.ErrNotFound)
	default:
		resp.Body.Close()
		return nil, 0, fmt.Errorf("GET %s with Range from %d: %s", url, off, resp.Status)
	}
}
