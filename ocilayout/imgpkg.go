package ocilayout

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
)

// Labels imgpkg writes, read by OpenImgpkgTar.
const (
	// LabelImgpkgRootBundle marks the root bundle in imgpkg's manifest.json.
	LabelImgpkgRootBundle = "dev.carvel.imgpkg.copy.root-bundle"
	// LabelImgpkgBundle is the config label of a bundle image.
	LabelImgpkgBundle = "dev.carvel.imgpkg.bundle"
)

// ImgpkgTar reads a tarball written by "imgpkg copy --to-tar", in place. It
// is an oras.ReadOnlyTarget: manifests and configs come from manifest.json
// (where imgpkg embeds them), layers from the sha256-<hex>.tar.gz entries.
// ferry reads this format for migration and never writes it.
//
// Its methods are safe for concurrent use, except Close, which must not run
// concurrently with the others.
type ImgpkgTar struct {
	tarFile
	roots []Root
	index ocispec.Index
}

var _ oras.ReadOnlyTarget = (*ImgpkgTar)(nil)

// imgpkg's manifest.json, as written by imgpkg 0.43.
type (
	imgpkgItem struct {
		Image      *imgpkgImage `json:"Image"`
		ImageIndex *imgpkgIndex `json:"ImageIndex"`
	}
	imgpkgImage struct {
		Refs     []string
		Layers   []imgpkgLayer
		Config   imgpkgBlob
		Manifest imgpkgBlob
		Tag      string
		OrigRef  string
		Labels   map[string]string
	}
	imgpkgIndex struct {
		Refs      []string
		Images    []imgpkgImage
		Indexes   []imgpkgIndex
		MediaType string
		Digest    digest.Digest
		Raw       string
		Tag       string
		OrigRef   string
		Labels    map[string]string
	}
	imgpkgLayer struct {
		MediaType string
		Digest    digest.Digest
		Size      int64
	}
	imgpkgBlob struct {
		MediaType string
		Digest    digest.Digest
		Raw       string
	}
)

// OpenImgpkgTar opens the imgpkg tarball at path. It reads every tar header
// once (with OpenTar's safety checks), then manifest.json, whose embedded
// manifests and configs are verified against their digests now
// (ErrDigestMismatch); layers are verified as they are fetched. A
// manifest.json that is missing or not in imgpkg's shape fails with
// ErrUnknownFormat (ErrDockerSave for docker save's), an unparsable one with
// ErrMalformedManifest.
//
// Roots are manifest.json's top-level images and indexes, in order, with
// imgpkg's tag, the original reference (OrigRef, else the first of Refs),
// RootBundle for the image labelled dev.carvel.imgpkg.copy.root-bundle and
// Bundle for images whose config has dev.carvel.imgpkg.bundle. A
// non-distributable layer without its entry is listed in the root's
// SkippedLayers; any other missing layer fails when fetched. Requests are
// set as a ferry tar would have them: on the root bundle alone when there is
// one (lock output is then its BundleLock), else on every root in order (an
// ImagesLock of all of them).
func OpenImgpkgTar(ctx context.Context, path string) (_ *ImgpkgTar, err error) {
	f, ti, err := openAndScan(ctx, path, "imgpkg tar", ErrUnknownFormat)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	me, ok := ti.file("manifest.json")
	if !ok {
		return nil, fmt.Errorf("%s: %w: not an imgpkg tarball: no manifest.json entry", path, ErrUnknownFormat)
	}
	b, err := readEntry(f, me, maxManifestJSON)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	switch manifestJSONShape(b) {
	case shapeDockerSave:
		return nil, fmt.Errorf("%s: %w", path, ErrDockerSave)
	case shapeOther:
		return nil, fmt.Errorf("%s: %w: manifest.json is not imgpkg's (an array of Image/ImageIndex objects)", path, ErrUnknownFormat)
	}
	var items []imgpkgItem
	if err := json.Unmarshal(b, &items); err != nil {
		return nil, fmt.Errorf("%s: manifest.json: %w: %w", path, ErrMalformedManifest, err)
	}
	t := &ImgpkgTar{tarFile: tarFile{path: path, f: f, ti: ti, blobs: make(map[digest.Digest]blobLoc)}}
	rootBundle := false
	for i, it := range items {
		var r Root
		var labels map[string]string
		switch {
		case it.Image != nil && it.ImageIndex == nil:
			if r, err = t.addImage(*it.Image); err != nil {
				return nil, fmt.Errorf("%s: manifest.json[%d]: %w", path, i, err)
			}
			labels = it.Image.Labels
			r.Tag, r.OriginalRef = it.Image.Tag, origRef(it.Image.OrigRef, it.Image.Refs)
		case it.ImageIndex != nil && it.Image == nil:
			if r, err = t.addIndex(*it.ImageIndex); err != nil {
				return nil, fmt.Errorf("%s: manifest.json[%d]: %w", path, i, err)
			}
			labels = it.ImageIndex.Labels
			r.Tag, r.OriginalRef = it.ImageIndex.Tag, origRef(it.ImageIndex.OrigRef, it.ImageIndex.Refs)
		default:
			return nil, fmt.Errorf("%s: manifest.json[%d]: %w: needs exactly one of Image and ImageIndex", path, i, ErrMalformedManifest)
		}
		if r.Tag != "" && !tagPattern.MatchString(r.Tag) {
			return nil, fmt.Errorf("%s: manifest.json[%d]: %w: tag %q is not a valid tag", path, i, ErrMalformedManifest, r.Tag)
		}
		if _, ok := labels[LabelImgpkgRootBundle]; ok {
			r.RootBundle = true
			rootBundle = true
		}
		t.roots = append(t.roots, r)
	}
	// Lock output mirrors what was asked for: the root bundle when there is
	// one, otherwise every image of the tarball.
	for i := range t.roots {
		if !rootBundle || t.roots[i].RootBundle {
			t.roots[i].Requests = []Request{{Position: i, Ref: t.roots[i].OriginalRef}}
		}
	}
	if t.index, err = NewIndex(t.roots); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

func origRef(orig string, refs []string) string {
	if orig != "" || len(refs) == 0 {
		return orig
	}
	return refs[0]
}

// addEmbedded records a manifest or config embedded in manifest.json after
// checking its digest.
func (t *ImgpkgTar) addEmbedded(what string, d digest.Digest, raw string) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("%s digest %q: %w: %w", what, d, ErrMalformedManifest, err)
	}
	if got := d.Algorithm().FromString(raw); got != d {
		return fmt.Errorf("%s %s embedded in manifest.json: %w: content hashes to %s", what, d, ErrDigestMismatch, got)
	}
	t.blobs[d] = blobLoc{data: []byte(raw)}
	return nil
}

// addImage records an image's manifest, config and layers and returns it as
// a root (descriptor, Bundle and SkippedLayers set).
func (t *ImgpkgTar) addImage(img imgpkgImage) (Root, error) {
	if err := t.addEmbedded("manifest", img.Manifest.Digest, img.Manifest.Raw); err != nil {
		return Root{}, err
	}
	if err := t.addEmbedded("config", img.Config.Digest, img.Config.Raw); err != nil {
		return Root{}, err
	}
	mt := img.Manifest.MediaType
	if mt == "" {
		mt, _ = sniffMediaType([]byte(img.Manifest.Raw))
	}
	r := Root{Desc: ocispec.Descriptor{MediaType: mt, Digest: img.Manifest.Digest, Size: int64(len(img.Manifest.Raw))}}
	var cfg struct {
		Config struct {
			Labels map[string]string `json:"Labels"`
		} `json:"config"`
	}
	if json.Unmarshal([]byte(img.Config.Raw), &cfg) == nil {
		_, r.Bundle = cfg.Config.Labels[LabelImgpkgBundle]
	}
	for _, l := range img.Layers {
		if err := l.Digest.Validate(); err != nil {
			return Root{}, fmt.Errorf("layer digest %q: %w: %w", l.Digest, ErrMalformedManifest, err)
		}
		name := strings.Replace(l.Digest.String(), ":", "-", 1) + ".tar.gz"
		if e, ok := t.ti.file(name); ok {
			t.blobs[l.Digest] = blobLoc{entry: e}
		} else if isNonDistributable(l.MediaType) {
			r.SkippedLayers = append(r.SkippedLayers, ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size})
		}
	}
	return r, nil
}

// addIndex records an index and everything under it and returns it as a root.
func (t *ImgpkgTar) addIndex(idx imgpkgIndex) (Root, error) {
	if err := t.addEmbedded("index", idx.Digest, idx.Raw); err != nil {
		return Root{}, err
	}
	mt := idx.MediaType
	if mt == "" {
		mt, _ = sniffMediaType([]byte(idx.Raw))
	}
	r := Root{Desc: ocispec.Descriptor{MediaType: mt, Digest: idx.Digest, Size: int64(len(idx.Raw))}}
	for _, img := range idx.Images {
		c, err := t.addImage(img)
		if err != nil {
			return Root{}, err
		}
		r.SkippedLayers = append(r.SkippedLayers, c.SkippedLayers...)
	}
	for _, sub := range idx.Indexes {
		c, err := t.addIndex(sub)
		if err != nil {
			return Root{}, err
		}
		r.SkippedLayers = append(r.SkippedLayers, c.SkippedLayers...)
	}
	return r, nil
}

// Path returns the path the tar was opened from.
func (t *ImgpkgTar) Path() string { return t.path }

// Roots returns the tarball's top-level images and indexes (see OpenImgpkgTar).
func (t *ImgpkgTar) Roots() []Root { return t.roots }

// Index returns the roots as an OCI index.json would list them (built with
// NewIndex), so callers can treat both tar formats alike.
func (t *ImgpkgTar) Index() ocispec.Index { return t.index }

// Blobs lists the blobs: manifests and configs embedded in manifest.json
// (Entry "manifest.json") first, then layer entries in tar order.
func (t *ImgpkgTar) Blobs() []BlobInfo { return t.blobInfos() }

// Fetch works as Tar.Fetch.
func (t *ImgpkgTar) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	return t.fetch(ctx, desc)
}

// Verifies works as Dir.Verifies.
func (t *ImgpkgTar) Verifies(desc ocispec.Descriptor, rc io.Reader) bool { return verifies(desc, rc) }

// Exists reports whether the tarball holds the blob.
func (t *ImgpkgTar) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	return t.exists(ctx, desc)
}

// Resolve works as Tar.Resolve, over Index.
func (t *ImgpkgTar) Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	return resolve(ctx, t.index, ref, t.fetch, t.blobSize)
}

// Verify works as Tar.Verify.
func (t *ImgpkgTar) Verify(ctx context.Context) ([]Problem, error) {
	return verify(ctx, t.index, t.blobInfos(), t.openRaw, t.Fetch)
}

// Close closes the tar file.
func (t *ImgpkgTar) Close() error { return t.close() }
