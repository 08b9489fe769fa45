package ocilayout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry"
)

// Tar, Dir and ImgpkgTar list the referrers they hold.
var (
	_ registry.ReferrerLister = (*Tar)(nil)
	_ registry.ReferrerLister = (*Dir)(nil)
	_ registry.ReferrerLister = (*ImgpkgTar)(nil)
)

// Referrers lists the manifests and indexes of the layout whose subject is
// desc, as the OCI 1.1 referrers API would: each descriptor has the media
// type, digest and size of the referrer, its artifact type (its
// artifactType field, else its config's media type) and its annotations.
// When artifactType is not empty only referrers of that type are listed. fn
// is called once, with the referrers sorted by digest, and not at all when
// there are none.
//
// The layout's manifests are those listed in index.json and, recursively,
// the children of the indexes among them: a referrer is found when it is
// one of them (ferry lists every referrer it writes in index.json, as
// oras-go's OCI store does). The first call reads them all, each once
// (manifests of more than 4 MiB and blobs missing from the layout are
// skipped); later calls use what it found. A manifest whose bytes do not
// match its digest fails with ErrDigestMismatch, one that cannot be parsed
// with ErrMalformedManifest. Safe for concurrent use.
func (t *Tar) Referrers(ctx context.Context, desc ocispec.Descriptor, artifactType string, fn func(referrers []ocispec.Descriptor) error) error {
	return t.refs.list(ctx, t.index, t.fetch, desc, artifactType, fn)
}

// Referrers works as Tar.Referrers.
func (d *Dir) Referrers(ctx context.Context, desc ocispec.Descriptor, artifactType string, fn func(referrers []ocispec.Descriptor) error) error {
	return d.refs.list(ctx, d.index, d.Fetch, desc, artifactType, fn)
}

// Referrers works as Tar.Referrers, over the manifests of manifest.json
// (imgpkg writes no referrers, so there are usually none).
func (t *ImgpkgTar) Referrers(ctx context.Context, desc ocispec.Descriptor, artifactType string, fn func(referrers []ocispec.Descriptor) error) error {
	return t.refs.list(ctx, t.index, t.fetch, desc, artifactType, fn)
}

// referrerIndex maps subject digests to the referrers a layout holds. It is
// built on first use; the zero value is ready. Safe for concurrent use.
type referrerIndex struct {
	mu        sync.Mutex
	bySubject map[digest.Digest][]ocispec.Descriptor // nil until built
}

// list calls fn with the referrers of desc, building the index first.
func (x *referrerIndex) list(ctx context.Context, index ocispec.Index, fetch fetchFunc, desc ocispec.Descriptor, artifactType string, fn func([]ocispec.Descriptor) error) error {
	bySubject, err := x.build(ctx, index, fetch)
	if err != nil {
		return err
	}
	var out []ocispec.Descriptor
	for _, r := range bySubject[desc.Digest] {
		if artifactType == "" || r.ArtifactType == artifactType {
			out = append(out, cloneDescriptor(r))
		}
	}
	if len(out) == 0 {
		return nil
	}
	return fn(out)
}

// build scans the layout's manifests once. A failed scan is not kept, so a
// cancelled context does not spoil later calls; concurrent callers wait for
// the one scan in progress.
func (x *referrerIndex) build(ctx context.Context, index ocispec.Index, fetch fetchFunc) (map[digest.Digest][]ocispec.Descriptor, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.bySubject != nil {
		return x.bySubject, nil
	}
	m, err := scanReferrers(ctx, index, fetch)
	if err != nil {
		return nil, err
	}
	x.bySubject = m
	return m, nil
}

// fetchFunc opens a blob, verified as it streams.
type fetchFunc = func(context.Context, ocispec.Descriptor) (io.ReadCloser, error)

// manifestFields are the parts of a manifest or index the scan reads.
type manifestFields struct {
	MediaType    string               `json:"mediaType"`
	ArtifactType string               `json:"artifactType"`
	Config       *ocispec.Descriptor  `json:"config"`
	Manifests    []ocispec.Descriptor `json:"manifests"`
	Subject      *ocispec.Descriptor  `json:"subject"`
	Annotations  map[string]string    `json:"annotations"`
}

// scanReferrers reads every manifest and index reachable from index.json
// through indexes, each digest once, and groups those with a subject by
// the subject's digest, each group sorted by digest.
func scanReferrers(ctx context.Context, index ocispec.Index, fetch fetchFunc) (map[digest.Digest][]ocispec.Descriptor, error) {
	out := make(map[digest.Digest][]ocispec.Descriptor)
	seen := make(map[digest.Digest]bool)
	queue := slices.Clone(index.Manifests)
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		if seen[d.Digest] || d.Digest.Validate() != nil || !maybeManifest(d) {
			continue
		}
		seen[d.Digest] = true
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b, err := fetchAll(ctx, fetch, d)
		if err != nil {
			if errors.Is(err, ErrMissingBlob) {
				continue // a sparse layout: the blob is not here, nor what it references
			}
			return nil, fmt.Errorf("referrers: manifest %s: %w", d.Digest, err)
		}
		var m manifestFields
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("referrers: manifest %s: %w: %w", d.Digest, ErrMalformedManifest, err)
		}
		mt := d.MediaType
		if mt == "" {
			if mt, err = sniffMediaType(b); err != nil {
				continue // not a manifest after all
			}
		}
		for _, c := range m.Manifests {
			if !seen[c.Digest] {
				queue = append(queue, c)
			}
		}
		if m.Subject == nil || m.Subject.Digest.Validate() != nil {
			continue
		}
		r := ocispec.Descriptor{MediaType: mt, Digest: d.Digest, Size: int64(len(b)), ArtifactType: m.ArtifactType, Annotations: m.Annotations}
		if r.ArtifactType == "" && m.Config != nil {
			r.ArtifactType = m.Config.MediaType
		}
		out[m.Subject.Digest] = append(out[m.Subject.Digest], r)
	}
	for _, rs := range out {
		slices.SortFunc(rs, func(a, b ocispec.Descriptor) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
	}
	return out, nil
}

// maybeManifest reports whether d may describe a manifest or an index: its
// media type says so, or it has none and is small enough.
func maybeManifest(d ocispec.Descriptor) bool {
	if d.Size < 0 || d.Size > maxManifestBlob {
		return false
	}
	return d.MediaType == "" || (isManifestType(d.MediaType) && d.MediaType != mediaTypeArtifactManifest)
}

// cloneDescriptor copies d with its own annotations map, so callers may
// modify what they get.
func cloneDescriptor(d ocispec.Descriptor) ocispec.Descriptor {
	if d.Annotations != nil {
		a := make(map[string]string, len(d.Annotations))
		for k, v := range d.Annotations {
			a[k] = v
		}
		d.Annotations = a
	}
	return d
}
