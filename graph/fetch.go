package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/ferry-oci/ferry/bundle"
)

// maxMetadataBytes limits what is read into memory: manifests, indexes and
// configs (the same limit as oras-go's copy cache).
const maxMetadataBytes = 4 << 20

// defaultConcurrency is used when an options struct says Concurrency <= 0,
// as imgpkg's --concurrency default.
const defaultConcurrency = 5

// metadataFanout multiplies the concurrency for requests that move little
// data (manifest reads and existence checks while discovering, and the
// copy's small blobs): with a distant registry their round trips, not
// bandwidth, set the wall time. Large blobs stay at the concurrency itself
// (see largeBlobBytes).
const metadataFanout = 4

// largeBlobBytes is the size above which a blob counts as large: a copy
// streams at most Concurrency such blobs at once, while smaller content runs
// at metadataFanout times that.
const largeBlobBytes = 256 << 10

// fanout returns the number of small requests allowed in flight for the
// concurrency n (<= 0 means defaultConcurrency).
func fanout(n int) int {
	if n <= 0 {
		n = defaultConcurrency
	}
	return n * metadataFanout
}

// Media types this package recognises beyond the OCI ones.
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	mediaTypeDockerForeignLayer = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

func isImageManifest(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == mediaTypeDockerManifest
}

func isIndex(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == mediaTypeDockerManifestList
}

// isNonDistributable reports whether a layer is non-distributable (foreign):
// the Docker foreign layer type or the (deprecated) OCI non-distributable types.
func isNonDistributable(desc ocispec.Descriptor) bool {
	switch desc.MediaType {
	case mediaTypeDockerForeignLayer,
		ocispec.MediaTypeImageLayerNonDistributable,     //nolint:staticcheck // deprecated but still met in the wild
		ocispec.MediaTypeImageLayerNonDistributableGzip, //nolint:staticcheck
		ocispec.MediaTypeImageLayerNonDistributableZstd: //nolint:staticcheck
		return true
	}
	return false
}

// isAbsent reports whether err means "not there for us": not found, or a
// 401/403/404 answer. imgpkg treats all of them as absent when it looks for
// an image in a bundle's repository.
func isAbsent(err error) bool {
	if errors.Is(err, errdef.ErrNotFound) {
		return true
	}
	var resp *errcode.ErrorResponse
	if errors.As(err, &resp) {
		switch resp.StatusCode {
		case http.StatusNotFound, http.StatusUnauthorized, http.StatusForbidden:
			return true
		}
	}
	return false
}

// fetchManifest resolves reference (a tag or a digest) in t and reads the
// manifest or index it names, verified against its descriptor. With a
// registry.ReferenceFetcher (remote repositories) this is one request.
// A digest reference must resolve to that digest. The media type of the
// descriptor is taken from the content when the target reports none of the
// known manifest types (OCI layouts report plain descriptors for digests).
func fetchManifest(ctx context.Context, t oras.ReadOnlyTarget, reference string) (ocispec.Descriptor, []byte, error) {
	var desc ocispec.Descriptor
	var body []byte
	if rf, ok := t.(registry.ReferenceFetcher); ok {
		d, rc, err := rf.FetchReference(ctx, reference)
		if err != nil {
			return ocispec.Descriptor{}, nil, err
		}
		defer rc.Close()
		if err := checkDigestRef(reference, d); err != nil {
			return ocispec.Descriptor{}, nil, err
		}
		if d.Size > maxMetadataBytes {
			return ocispec.Descriptor{}, nil, fmt.Errorf("manifest %s is %d bytes: %w", d.Digest, d.Size, ErrTooLarge)
		}
		if body, err = readVerified(t, d, rc); err != nil {
			return ocispec.Descriptor{}, nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
		}
		desc = d
	} else {
		d, err := t.Resolve(ctx, reference)
		if err != nil {
			return ocispec.Descriptor{}, nil, err
		}
		if err := checkDigestRef(reference, d); err != nil {
			return ocispec.Descriptor{}, nil, err
		}
		if body, err = fetchSmall(ctx, t, d); err != nil {
			return ocispec.Descriptor{}, nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
		}
		desc = d
	}
	if !isImageManifest(desc.MediaType) && !isIndex(desc.MediaType) {
		desc.MediaType = sniffMediaType(body, desc.MediaType)
	}
	return desc, body, nil
}

// checkDigestRef fails when reference is a digest and desc has another one.
func checkDigestRef(reference string, desc ocispec.Descriptor) error {
	want, err := digest.Parse(reference)
	if err != nil {
		return nil // a tag
	}
	if desc.Digest != want {
		return fmt.Errorf("%s resolved to %s: %w", want, desc.Digest, ErrDigestMismatch)
	}
	return nil
}

// fetchSmall reads a manifest or config of at most maxMetadataBytes,
// verified against desc.
func fetchSmall(ctx context.Context, f content.Fetcher, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size > maxMetadataBytes {
		return nil, fmt.Errorf("%s is %d bytes: %w", desc.Digest, desc.Size, ErrTooLarge)
	}
	rc, err := f.Fetch(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return readVerified(f, desc, rc)
}

// readVerified reads rc, fetched from src for desc (of at most
// maxMetadataBytes), to its end and returns its bytes, failing with
// ErrDigestMismatch or a size error when they are not desc's. The bytes are
// hashed here only when src does not verify them itself (see verified), so
// content the store already checked is not hashed twice.
func readVerified(src any, desc ocispec.Descriptor, rc io.ReadCloser) ([]byte, error) {
	if desc.Size < 0 || desc.Size > maxMetadataBytes {
		return nil, fmt.Errorf("%s is %d bytes: %w", desc.Digest, desc.Size, ErrTooLarge)
	}
	// One allocation of Size+1 bytes: reading Size bytes and then the end
	// (io.EOF, where a verifying reader reports a mismatch) fills at most
	// Size of them; a byte more means the content is too long.
	buf := make([]byte, desc.Size+1)
	n, err := io.ReadFull(verified(src, desc, rc), buf)
	switch {
	case err == nil:
		return nil, fmt.Errorf("%s: more than %d bytes: %w", desc.Digest, desc.Size, content.ErrTrailingData)
	case err != io.EOF && err != io.ErrUnexpectedEOF:
		return nil, err
	case int64(n) != desc.Size:
		return nil, fmt.Errorf("%s: %d of %d bytes: %w", desc.Digest, n, desc.Size, io.ErrUnexpectedEOF)
	}
	return buf[:n], nil
}

// sniffMediaType reads the mediaType field of a manifest, or guesses from its
// shape, for targets that do not report one.
func sniffMediaType(body []byte, fallback string) string {
	var probe struct {
		MediaType string            `json:"mediaType"`
		Config    json.RawMessage   `json:"config"`
		Manifests []json.RawMessage `json:"manifests"`
	}
	if err := json.Unmarshal(body, &probe); err != nil {
		return fallback
	}
	switch {
	case isImageManifest(probe.MediaType) || isIndex(probe.MediaType):
		return probe.MediaType
	case probe.Manifests != nil:
		return ocispec.MediaTypeImageIndex
	case probe.Config != nil:
		return ocispec.MediaTypeImageManifest
	}
	return fallback
}

// contentVerifier is what a source implements when its Fetch checks the
// content itself, as ferry's store and layout readers do: Verifies reports
// whether rc, returned by the source's Fetch for desc, can only end (return
// io.EOF) after exactly desc's bytes, any other content failing the Read
// that reaches its end, or holds content verified earlier (a blob committed
// in a store). graph then does not hash those bytes a second time. A source
// that does not implement it, or answers false, is verified by graph.
type contentVerifier interface {
	Verifies(desc ocispec.Descriptor, rc io.Reader) bool
}

// verified returns rc, fetched from src for desc, as a reader that fails at
// its end unless the content is desc: rc itself when src verifies it (see
// contentVerifier), otherwise rc wrapped in a verifyingReadCloser. Either
// way each byte is hashed once.
func verified(src any, desc ocispec.Descriptor, rc io.ReadCloser) io.ReadCloser {
	if v, ok := src.(contentVerifier); ok && v.Verifies(desc, rc) {
		return rc
	}
	return newVerifyingReadCloser(rc, desc)
}

// verifyingReadCloser checks size and digest while the content streams: the
// read that reaches the end returns ErrDigestMismatch (or a size error)
// instead of io.EOF when the content is not what desc describes, so a
// consumer never completes on bad bytes.
type verifyingReadCloser struct {
	rc   io.ReadCloser
	vr   *content.VerifyReader
	desc ocispec.Descriptor
}

func newVerifyingReadCloser(rc io.ReadCloser, desc ocispec.Descriptor) *verifyingReadCloser {
	return &verifyingReadCloser{rc: rc, vr: content.NewVerifyReader(rc, desc), desc: desc}
}

func (v *verifyingReadCloser) Read(p []byte) (int, error) {
	n, err := v.vr.Read(p)
	if err == io.EOF {
		if verr := v.vr.Verify(); verr != nil {
			if errors.Is(verr, content.ErrMismatchedDigest) {
				return n, fmt.Errorf("blob %s: %w", v.desc.Digest, ErrDigestMismatch)
			}
			return n, fmt.Errorf("blob %s: %w", v.desc.Digest, verr)
		}
	}
	return n, err
}

func (v *verifyingReadCloser) Close() error { return v.rc.Close() }

// repoCache asks a Source once per repository name. Safe for concurrent use.
type repoCache struct {
	src   Source
	mu    sync.Mutex
	repos map[string]oras.ReadOnlyTarget
}

func newRepoCache(src Source) *repoCache {
	return &repoCache{src: src, repos: make(map[string]oras.ReadOnlyTarget)}
}

func (c *repoCache) get(ctx context.Context, repo string) (oras.ReadOnlyTarget, error) {
	c.mu.Lock()
	t, ok := c.repos[repo]
	c.mu.Unlock()
	if ok {
		return t, nil
	}
	t, err := c.src.Repository(ctx, repo)
	if err != nil {
		return nil, fmt.Errorf("repository %s: %w", repo, err)
	}
	c.mu.Lock()
	c.repos[repo] = t
	c.mu.Unlock()
	return t, nil
}

// imageConfig is the part of an image config this package reads.
type imageConfig struct {
	Config struct {
		Labels map[string]string `json:"Labels"`
	} `json:"config"`
}

// hasBundleLabel reads an image config and reports whether it carries the
// bundle label (the key is enough). Configs of other media types are not
// bundles and are not read.
func hasBundleLabel(ctx context.Context, f content.Fetcher, config ocispec.Descriptor) (bool, error) {
	if config.MediaType != ocispec.MediaTypeImageConfig && config.MediaType != mediaTypeDockerConfig {
		return false, nil
	}
	raw, err := fetchSmall(ctx, f, config)
	if err != nil {
		return false, err
	}
	var cfg imageConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return false, err
	}
	_, ok := cfg.Config.Labels[bundle.BundleLabel]
	return ok, nil
}

// limiter bounds concurrent I/O. Hold it only while doing I/O, never while
// waiting for other work that needs it.
type limiter chan struct{}

func newLimiter(n int) limiter {
	if n <= 0 {
		n = defaultConcurrency
	}
	return make(limiter, n)
}

func (l limiter) acquire(ctx context.Context) error {
	select {
	case l <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l limiter) release() { <-l }

// forEach runs fn(ctx, i) for i in [0, n) in goroutines and returns the first
// error; the context given to the others is cancelled on the first error.
func forEach(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	if n == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for i := range n {
		wg.Go(func() {
			if err := fn(ctx, i); err != nil {
				once.Do(func() {
					first = err
					cancel()
				})
			}
		})
	}
	wg.Wait()
	return first
}
