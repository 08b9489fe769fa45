package ocilayout

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Problem is one content fault found by Verify.
type Problem struct {
	// Digest is the blob at fault.
	Digest digest.Digest
	// Entry is where the blob is stored (tar entry or path in the layout);
	// empty when it is missing.
	Entry string
	// Parent is the manifest or index referencing the blob; empty for a blob
	// checked on its own or a root of index.json.
	Parent digest.Digest
	// Err wraps ErrDigestMismatch, ErrSizeMismatch, ErrMissingBlob or
	// ErrMalformedManifest.
	Err error
}

// String describes the problem in one line.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.Err.Error())
	if p.Parent != "" {
		fmt.Fprintf(&b, " (referenced by %s)", p.Parent)
	}
	return b.String()
}

// Media types whose blobs reference other blobs.
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeArtifactManifest   = "application/vnd.oci.artifact.manifest.v1+json"
)

// isManifestType reports whether blobs of media type mt reference others.
func isManifestType(mt string) bool {
	switch mt {
	case ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex,
		mediaTypeDockerManifest, mediaTypeDockerManifestList, mediaTypeArtifactManifest:
		return true
	}
	return false
}

// children returns the descriptors a manifest, index or artifact manifest
// references (a subject is not required to be present and is left out).
func children(b []byte) ([]ocispec.Descriptor, error) {
	var m struct {
		Config    *ocispec.Descriptor  `json:"config"`
		Layers    []ocispec.Descriptor `json:"layers"`
		Manifests []ocispec.Descriptor `json:"manifests"`
		Blobs     []ocispec.Descriptor `json:"blobs"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	var out []ocispec.Descriptor
	if m.Config != nil {
		out = append(out, *m.Config)
	}
	out = append(out, m.Manifests...)
	out = append(out, m.Layers...)
	out = append(out, m.Blobs...)
	for _, d := range out {
		if err := d.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("descriptor %q: %w", d.Digest, err)
		}
	}
	return out, nil
}

// verify hashes every blob in blobs (read with openRaw), then walks the
// graph from index's roots checking every referenced blob is present with
// its size.
func verify(ctx context.Context, index ocispec.Index, blobs []BlobInfo,
	openRaw func(context.Context, BlobInfo) (io.ReadCloser, error),
	fetch func(context.Context, ocispec.Descriptor) (io.ReadCloser, error),
) ([]Problem, error) {
	var problems []Problem
	sizes := make(map[digest.Digest]int64, len(blobs))
	entries := make(map[digest.Digest]string, len(blobs))
	bad := make(map[digest.Digest]bool)
	buf := make([]byte, bufSize)
	for _, bi := range blobs {
		sizes[bi.Digest], entries[bi.Digest] = bi.Size, bi.Entry
		got, n, err := hashBlob(ctx, openRaw, bi, buf)
		if err != nil {
			return problems, err
		}
		switch {
		case n != bi.Size:
			bad[bi.Digest] = true
			problems = append(problems, Problem{Digest: bi.Digest, Entry: bi.Entry,
				Err: fmt.Errorf("blob %s (%s): %w: read %d bytes of %d", bi.Digest, bi.Entry, ErrSizeMismatch, n, bi.Size)})
		case got != bi.Digest:
			bad[bi.Digest] = true
			problems = append(problems, Problem{Digest: bi.Digest, Entry: bi.Entry, Err: digestMismatch(bi.Digest, got, bi.Entry)})
		}
	}

	skipped := skippedLayers(index)
	type item struct {
		desc   ocispec.Descriptor
		parent digest.Digest
	}
	queue := make([]item, 0, len(index.Manifests))
	for _, m := range index.Manifests {
		queue = append(queue, item{desc: m})
	}
	seen := make(map[digest.Digest]bool)
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return problems, err
		}
		it := queue[0]
		queue = queue[1:]
		d := it.desc
		if seen[d.Digest] {
			continue
		}
		seen[d.Digest] = true
		size, ok := sizes[d.Digest]
		if !ok {
			if skipped[d.Digest] {
				continue
			}
			what := ""
			if isNonDistributable(d.MediaType) {
				what = " (a non-distributable layer not listed in " + AnnotationFerrySkippedLayers + ")"
			}
			problems = append(problems, Problem{Digest: d.Digest, Parent: it.parent, Err: missingBlob(d.Digest, what)})
			continue
		}
		if size != d.Size {
			problems = append(problems, Problem{Digest: d.Digest, Entry: entries[d.Digest], Parent: it.parent,
				Err: fmt.Errorf("blob %s (%s): %w: referenced with size %d, stored with %d", d.Digest, entries[d.Digest], ErrSizeMismatch, d.Size, size)})
			continue
		}
		if bad[d.Digest] {
			continue
		}
		mt := d.MediaType
		if mt == "" && size <= maxManifestBlob && it.parent == "" {
			if b, err := fetchAll(ctx, fetch, d); err == nil {
				mt, _ = sniffMediaType(b)
			}
		}
		if !isManifestType(mt) {
			continue
		}
		b, err := fetchAll(ctx, fetch, d)
		if err != nil {
			if ctx.Err() != nil {
				return problems, ctx.Err()
			}
			problems = append(problems, Problem{Digest: d.Digest, Entry: entries[d.Digest], Parent: it.parent, Err: err})
			continue
		}
		kids, err := children(b)
		if err != nil {
			problems = append(problems, Problem{Digest: d.Digest, Entry: entries[d.Digest], Parent: it.parent,
				Err: fmt.Errorf("blob %s (%s): %w: %w", d.Digest, entries[d.Digest], ErrMalformedManifest, err)})
			continue
		}
		for _, k := range kids {
			queue = append(queue, item{desc: k, parent: d.Digest})
		}
	}
	return problems, nil
}

// hashBlob reads a stored blob through openRaw and returns its digest (in
// the algorithm of bi.Digest) and length.
func hashBlob(ctx context.Context, openRaw func(context.Context, BlobInfo) (io.ReadCloser, error), bi BlobInfo, buf []byte) (digest.Digest, int64, error) {
	rc, err := openRaw(ctx, bi)
	if err != nil {
		return "", 0, fmt.Errorf("blob %s (%s): %w", bi.Digest, bi.Entry, err)
	}
	defer rc.Close()
	h := bi.Digest.Algorithm().Hash()
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return "", n, err
		}
		m, err := rc.Read(buf)
		h.Write(buf[:m])
		n += int64(m)
		if err == io.EOF {
			return digest.NewDigest(bi.Digest.Algorithm(), h), n, nil
		}
		if err != nil {
			return "", n, fmt.Errorf("blob %s (%s): %w", bi.Digest, bi.Entry, err)
		}
	}
}

// isNonDistributable reports whether a layer media type is one that
// registries and copies may leave out.
func isNonDistributable(mt string) bool {
	return strings.Contains(mt, "nondistributable") || strings.Contains(mt, ".foreign.")
}
