package harness

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"
)

// Docker schema2 media types (image-spec has only the OCI ones).
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerForeignLayer = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

// Names used by imgpkg bundles and cosign.
const (
	// BundleLabel is the config label that marks an image as an imgpkg bundle.
	BundleLabel = "dev.carvel.imgpkg.bundle"
	// KbldIDAnnotation is the annotation kbld writes on images.yml entries.
	KbldIDAnnotation = "kbld.carvel.dev/id"
	// MediaTypeCosignSimpleSigning is the layer type of a cosign signature.
	MediaTypeCosignSimpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"
	// CosignSignatureAnnotation carries the signature on a cosign layer.
	CosignSignatureAnnotation = "dev.cosignproject.cosign/signature"
)

// fixtureTime is the creation time written into fixture configs.
var fixtureTime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// Builder pushes fixtures to registries with oras-go. Content is
// pseudo-random from Seed and a call counter: the n-th fixture built by two
// builders with the same Seed has the same bytes, wherever it is pushed.
// The zero value talks HTTPS with oras-go's default client; use
// Registry.Builder for a registry started by StartRegistry. A Builder is
// safe for concurrent use (the content then depends on call order) and must
// not be copied after first use.
type Builder struct {
	// Client sends the requests; nil means oras-go's default client.
	Client remote.Client
	// PlainHTTP talks HTTP instead of HTTPS.
	PlainHTTP bool
	// Seed selects the pseudo-random content.
	Seed uint64

	mu sync.Mutex
	n  uint64
}

// ImageSpec describes an image for Builder.Image. The zero value is an OCI
// image for linux/amd64 with one 1 KiB layer, pushed by digest only.
type ImageSpec struct {
	// Layers are the sizes of the pseudo-random files, one per layer; each
	// layer is a gzip (level 0) tar holding one file of that size, so the
	// blob is a little larger. Default: one layer of 1024 bytes.
	Layers []int
	// SharedBase, if not nil, is the content of a first layer built only
	// from these bytes (no randomness), so images with the same SharedBase
	// share that blob.
	SharedBase []byte
	// Docker uses Docker schema2 media types instead of OCI ones.
	Docker bool
	// Platform goes into the config; default linux/amd64.
	Platform *ocispec.Platform
	// NonDistributable adds a first, non-distributable layer (Docker
	// foreign layer or OCI non-distributable layer) with a URL under
	// https://example.invalid/. Its blob is pushed too unless
	// ForeignBlobMissing is set.
	NonDistributable   bool
	ForeignBlobMissing bool
	// Labels go into the config.
	Labels map[string]string
	// Annotations go into the manifest.
	Annotations map[string]string
	// Tag, if set, tags the manifest.
	Tag string
}

// IndexSpec describes an OCI index or a Docker manifest list of
// single-platform images. The zero value is an OCI index of linux/amd64 and
// linux/arm64 images with one 1 KiB layer each.
type IndexSpec struct {
	// Platforms of the child images; default linux/amd64 and linux/arm64.
	Platforms []ocispec.Platform
	// Layers of each child image (see ImageSpec.Layers).
	Layers []int
	// Docker makes a Docker manifest list of schema2 images.
	Docker bool
	// Annotations go into the index.
	Annotations map[string]string
	// Tag, if set, tags the index.
	Tag string
}

// BundleSpec describes an imgpkg bundle for Builder.Bundle. The zero value
// is a bundle with an empty images.yml and one config file.
type BundleSpec struct {
	// Images are the digest references listed in .imgpkg/images.yml, in
	// order. A nested bundle is simply a bundle listed here.
	Images []string
	// Annotations of each image by reference; an image not in the map gets
	// {kbld.carvel.dev/id: fixture/image-N}.
	Annotations map[string]map[string]string
	// Files are extra bundle files by slash path (for example
	// "config/app.yml"); default one pseudo-random config/config.yml.
	Files map[string]string
	// OCI uses OCI media types; default Docker schema2, as imgpkg pushes.
	OCI bool
	// Tag, if set, tags the bundle.
	Tag string
}

// Repository opens repoRef ("host:port/name") with the builder's client.
func (b *Builder) Repository(t testing.TB, repoRef string) *remote.Repository {
	t.Helper()
	repo, err := remote.NewRepository(repoRef)
	if err != nil {
		t.Fatalf("repository %q: %v", repoRef, err)
	}
	if b.Client != nil {
		repo.Client = b.Client
	}
	repo.PlainHTTP = b.PlainHTTP
	return repo
}

// Image pushes an image described by spec to repoRef and returns its
// manifest descriptor.
func (b *Builder) Image(ctx context.Context, t testing.TB, repoRef string, spec ImageSpec) ocispec.Descriptor {
	t.Helper()
	repo := b.Repository(t, repoRef)
	desc, _ := b.image(ctx, t, repo, spec)
	if spec.Tag != "" {
		b.tag(ctx, t, repo, desc, spec.Tag)
	}
	return desc
}

func (b *Builder) image(ctx context.Context, t testing.TB, repo *remote.Repository, spec ImageSpec) (ocispec.Descriptor, []byte) {
	t.Helper()
	rnd := b.stream("image")
	layerType, configType, manifestType := ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageConfig, ocispec.MediaTypeImageManifest
	if spec.Docker {
		layerType, configType, manifestType = MediaTypeDockerLayer, MediaTypeDockerConfig, MediaTypeDockerManifest
	}
	var layers []ocispec.Descriptor
	var diffIDs []digest.Digest
	add := func(mediaType string, files map[string][]byte, urls []string, push bool) {
		blob, diffID := tarGz(t, files, gzip.NoCompression)
		d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(blob), Size: int64(len(blob)), URLs: urls}
		if push {
			pushBlob(ctx, t, repo, d, blob)
		}
		layers = append(layers, d)
		diffIDs = append(diffIDs, diffID)
	}
	if spec.NonDistributable {
		foreignType := ocispec.MediaTypeImageLayerNonDistributableGzip //nolint:staticcheck // the deprecated type is the point
		if spec.Docker {
			foreignType = MediaTypeDockerForeignLayer
		}
		content := randomBytes(rnd, 512)
		url := "https://example.invalid/ferry-e2e/foreign/" + digest.FromBytes(content).Encoded()
		add(foreignType, map[string][]byte{"foreign/base.bin": content}, []string{url}, !spec.ForeignBlobMissing)
	}
	if spec.SharedBase != nil {
		add(layerType, map[string][]byte{"base/base.bin": spec.SharedBase}, nil, true)
	}
	sizes := spec.Layers
	if len(sizes) == 0 {
		sizes = []int{1024}
	}
	for i, size := range sizes {
		add(layerType, map[string][]byte{fmt.Sprintf("layer%d/data.bin", i): randomBytes(rnd, size)}, nil, true)
	}

	platform := ocispec.Platform{OS: "linux", Architecture: "amd64"}
	if spec.Platform != nil {
		platform = *spec.Platform
	}
	cfg := ocispec.Image{
		Created:  &fixtureTime,
		Platform: platform,
		Config:   ocispec.ImageConfig{Labels: spec.Labels},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
		History:  []ocispec.History{{Created: &fixtureTime, CreatedBy: "ferry e2e fixture"}},
	}
	configDesc := pushJSON(ctx, t, repo, configType, cfg)
	desc, raw := pushManifest(ctx, t, repo, ocispec.Manifest{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   manifestType,
		Config:      configDesc,
		Layers:      layers,
		Annotations: spec.Annotations,
	})
	return desc, raw
}

// Index pushes an OCI index (or, with spec.Docker, a Docker manifest list)
// of one image per platform to repoRef and returns its descriptor. The child
// images are pushed by digest only.
func (b *Builder) Index(ctx context.Context, t testing.TB, repoRef string, spec IndexSpec) ocispec.Descriptor {
	t.Helper()
	repo := b.Repository(t, repoRef)
	platforms := spec.Platforms
	if len(platforms) == 0 {
		platforms = []ocispec.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}
	}
	idx := ocispec.Index{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   ocispec.MediaTypeImageIndex,
		Annotations: spec.Annotations,
	}
	if spec.Docker {
		idx.MediaType = MediaTypeDockerManifestList
	}
	for _, p := range platforms {
		child, _ := b.image(ctx, t, repo, ImageSpec{Layers: spec.Layers, Docker: spec.Docker, Platform: &p})
		child.Platform = &p
		idx.Manifests = append(idx.Manifests, child)
	}
	raw, err := json.Marshal(idx)
	if err != nil {
		t.Fatalf("index: %v", err)
	}
	desc := ocispec.Descriptor{MediaType: idx.MediaType, Digest: digest.FromBytes(raw), Size: int64(len(raw))}
	pushBlob(ctx, t, repo, desc, raw)
	if spec.Tag != "" {
		b.tag(ctx, t, repo, desc, spec.Tag)
	}
	return desc
}

// ManifestList pushes a Docker manifest list: Index with spec.Docker set.
func (b *Builder) ManifestList(ctx context.Context, t testing.TB, repoRef string, spec IndexSpec) ocispec.Descriptor {
	t.Helper()
	spec.Docker = true
	return b.Index(ctx, t, repoRef, spec)
}

// Bundle pushes an imgpkg bundle to repoRef and returns its descriptor: a
// config with the label dev.carvel.imgpkg.bundle "true" and one gzip tar
// layer holding .imgpkg/images.yml (an ImagesLock of spec.Images) and the
// bundle files.
func (b *Builder) Bundle(ctx context.Context, t testing.TB, repoRef string, spec BundleSpec) ocispec.Descriptor {
	t.Helper()
	repo := b.Repository(t, repoRef)
	rnd := b.stream("bundle")
	files := map[string][]byte{".imgpkg/images.yml": ImagesLockYAML(t, spec.Images, spec.Annotations)}
	if spec.Files == nil {
		files["config/config.yml"] = fmt.Appendf(nil, "#@data/values\n---\nseed: %q\n", base64.RawURLEncoding.EncodeToString(randomBytes(rnd, 24)))
	}
	for name, content := range spec.Files {
		files[name] = []byte(content)
	}
	layerType, configType, manifestType := MediaTypeDockerLayer, MediaTypeDockerConfig, MediaTypeDockerManifest
	if spec.OCI {
		layerType, configType, manifestType = ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageConfig, ocispec.MediaTypeImageManifest
	}
	blob, diffID := tarGz(t, files, gzip.BestSpeed)
	layer := ocispec.Descriptor{MediaType: layerType, Digest: digest.FromBytes(blob), Size: int64(len(blob))}
	pushBlob(ctx, t, repo, layer, blob)
	cfg := ocispec.Image{
		Created: &fixtureTime,
		Config:  ocispec.ImageConfig{Labels: map[string]string{BundleLabel: "true"}},
		RootFS:  ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
		History: []ocispec.History{{Created: &fixtureTime, CreatedBy: "imgpkg", Author: "imgpkg"}},
	}
	configDesc := pushJSON(ctx, t, repo, configType, cfg)
	desc, _ := pushManifest(ctx, t, repo, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: manifestType,
		Config:    configDesc,
		Layers:    []ocispec.Descriptor{layer},
	})
	if spec.Tag != "" {
		b.tag(ctx, t, repo, desc, spec.Tag)
	}
	return desc
}

// SignatureTag pushes a cosign-like signature for subject to repoRef, tagged
// "sha256-<hex>.sig", and returns its descriptor.
func (b *Builder) SignatureTag(ctx context.Context, t testing.TB, repoRef string, subject digest.Digest) ocispec.Descriptor {
	t.Helper()
	return b.CosignTag(ctx, t, repoRef, subject, "sig")
}

// CosignTag pushes a cosign-like artifact for subject tagged
// "sha256-<hex>.<suffix>" (suffix "sig", "att" or "sbom") and returns its
// descriptor. The payload is a simple-signing document naming subject; the
// signature is pseudo-random.
func (b *Builder) CosignTag(ctx context.Context, t testing.TB, repoRef string, subject digest.Digest, suffix string) ocispec.Descriptor {
	t.Helper()
	repo := b.Repository(t, repoRef)
	rnd := b.stream("cosign")
	payload := fmt.Appendf(nil,
		`{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`,
		repoRef, subject)
	layer := ocispec.Descriptor{
		MediaType:   MediaTypeCosignSimpleSigning,
		Digest:      digest.FromBytes(payload),
		Size:        int64(len(payload)),
		Annotations: map[string]string{CosignSignatureAnnotation: base64.StdEncoding.EncodeToString(randomBytes(rnd, 64))},
	}
	pushBlob(ctx, t, repo, layer, payload)
	cfg := ocispec.Image{
		Created: &fixtureTime,
		RootFS:  ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layer.Digest}},
		History: []ocispec.History{{Created: &fixtureTime}},
	}
	configDesc := pushJSON(ctx, t, repo, ocispec.MediaTypeImageConfig, cfg)
	desc, _ := pushManifest(ctx, t, repo, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    configDesc,
		Layers:    []ocispec.Descriptor{layer},
	})
	b.tag(ctx, t, repo, desc, fmt.Sprintf("%s-%s.%s", subject.Algorithm(), subject.Encoded(), suffix))
	return desc
}

// FetchManifest resolves reference (a tag or digest) in repoRef and returns
// the manifest's descriptor and bytes.
func (b *Builder) FetchManifest(ctx context.Context, t testing.TB, repoRef, reference string) (ocispec.Descriptor, []byte) {
	t.Helper()
	repo := b.Repository(t, repoRef)
	desc, rc, err := repo.FetchReference(ctx, reference)
	if err != nil {
		t.Fatalf("fetch %s:%s: %v", repoRef, reference, err)
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, 4<<20))
	if err != nil {
		t.Fatalf("fetch %s:%s: %v", repoRef, reference, err)
	}
	if digest.FromBytes(raw) != desc.Digest {
		t.Fatalf("fetch %s:%s: content does not match %s", repoRef, reference, desc.Digest)
	}
	return desc, raw
}

// ImagesLockYAML renders an imgpkg ImagesLock listing images in order, with
// annotations[image] (default {kbld.carvel.dev/id: fixture/image-N}). It
// fails the test if an image is not a digest reference.
func ImagesLockYAML(t testing.TB, images []string, annotations map[string]map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteString("---\napiVersion: imgpkg.carvel.dev/v1alpha1\nkind: ImagesLock\n")
	if len(images) == 0 {
		buf.WriteString("images: []\n")
		return buf.Bytes()
	}
	buf.WriteString("images:\n")
	for i, img := range images {
		if !strings.Contains(img, "@sha256:") {
			t.Fatalf("images.yml: %q is not a digest reference", img)
		}
		ann, ok := annotations[img]
		if !ok {
			ann = map[string]string{KbldIDAnnotation: fmt.Sprintf("fixture/image-%d", i)}
		}
		fmt.Fprintf(&buf, "- image: %s\n", strconv.Quote(img))
		if len(ann) == 0 {
			continue
		}
		buf.WriteString("  annotations:\n")
		for _, k := range slices.Sorted(maps.Keys(ann)) {
			fmt.Fprintf(&buf, "    %s: %s\n", strconv.Quote(k), strconv.Quote(ann[k]))
		}
	}
	return buf.Bytes()
}

// stream returns the pseudo-random source of the builder's next fixture.
func (b *Builder) stream(kind string) *rand.ChaCha8 {
	b.mu.Lock()
	n := b.n
	b.n++
	b.mu.Unlock()
	return rand.NewChaCha8(sha256.Sum256(fmt.Appendf(nil, "ferry-e2e/%d/%d/%s", b.Seed, n, kind)))
}

func randomBytes(rnd *rand.ChaCha8, n int) []byte {
	b := make([]byte, n)
	_, _ = rnd.Read(b) // never fails
	return b
}

// tarGz builds a deterministic tar of files (parent directories first,
// entries sorted, mtime zero) and gzips it at level. It returns the blob and
// the tar's digest (the layer's diff ID).
func tarGz(t testing.TB, files map[string][]byte, level int) ([]byte, digest.Digest) {
	t.Helper()
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	dirs := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		var parents []string
		for d := path.Dir(name); d != "." && d != "/" && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			parents = append(parents, d)
		}
		slices.Reverse(parents)
		for _, d := range parents {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: time.Unix(0, 0)}); err != nil {
				t.Fatalf("tar: %v", err)
			}
		}
		content := files[name]
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(content)), ModTime: time.Unix(0, 0)}); err != nil {
			t.Fatalf("tar: %v", err)
		}
		if _, err := tw.Write(content); err != nil {
			t.Fatalf("tar: %v", err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("tar: %v", err)
	}
	var gzBuf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gzBuf, level)
	if err != nil {
		t.Fatalf("gzip: %v", err)
	}
	if _, err := zw.Write(tarBuf.Bytes()); err != nil {
		t.Fatalf("gzip: %v", err)
	}
	if err := zw.Close(); err != nil {
		t.Fatalf("gzip: %v", err)
	}
	return gzBuf.Bytes(), digest.FromBytes(tarBuf.Bytes())
}

// pushBlob pushes content unless the repository already has it.
func pushBlob(ctx context.Context, t testing.TB, repo *remote.Repository, desc ocispec.Descriptor, content []byte) {
	t.Helper()
	ok, err := repo.Exists(ctx, desc)
	if err != nil {
		t.Fatalf("push %s to %s: %v", desc.Digest, repo.Reference, err)
	}
	if ok {
		return
	}
	if err := repo.Push(ctx, desc, bytes.NewReader(content)); err != nil {
		t.Fatalf("push %s to %s: %v", desc.Digest, repo.Reference, err)
	}
}

func pushJSON(ctx context.Context, t testing.TB, repo *remote.Repository, mediaType string, v any) ocispec.Descriptor {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json: %v", err)
	}
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(raw), Size: int64(len(raw))}
	pushBlob(ctx, t, repo, desc, raw)
	return desc
}

func pushManifest(ctx context.Context, t testing.TB, repo *remote.Repository, m ocispec.Manifest) (ocispec.Descriptor, []byte) {
	t.Helper()
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("manifest: %v", err)
	}
	desc := ocispec.Descriptor{MediaType: m.MediaType, Digest: digest.FromBytes(raw), Size: int64(len(raw))}
	pushBlob(ctx, t, repo, desc, raw)
	return desc, raw
}

func (b *Builder) tag(ctx context.Context, t testing.TB, repo *remote.Repository, desc ocispec.Descriptor, tag string) {
	t.Helper()
	if err := repo.Tag(ctx, desc, tag); err != nil {
		t.Fatalf("tag %s:%s: %v", repo.Reference, tag, err)
	}
}
