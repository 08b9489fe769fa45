package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ferry-oci/ferry/bundle"
	"github.com/ferry-oci/ferry/lockfile"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"
)

// fixtureTag is the tag of every fixture root in the source registry.
const fixtureTag = "v1"

// Fixture repositories in the source registry.
const (
	bigRepo        = "big/image"
	midBundleRepo  = "mid/bundle"
	manyBundleRepo = "many/bundle"
)

// fixtureCreated returns the creation time written into fixture configs.
func fixtureCreated() *time.Time {
	t := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	return &t
}

// imageFixture is an image (or bundle) pushed to the source registry.
type imageFixture struct {
	repo  string             // repository in the source registry
	tag   string             // "" when pushed by digest only
	desc  ocispec.Descriptor // its manifest
	bytes int64              // manifest + config + layers
}

// bundleFixture is an imgpkg bundle and the images its images.yml lists.
type bundleFixture struct {
	bundle imageFixture
	images []imageFixture
}

// all returns the bundle followed by its images: what a script without
// bundle support copies one by one.
func (b bundleFixture) all() []imageFixture {
	return append([]imageFixture{b.bundle}, b.images...)
}

// totalBytes sums the bytes of the bundle and its images (a blob shared by
// several images is counted once per image).
func (b bundleFixture) totalBytes() int64 {
	n := b.bundle.bytes
	for _, im := range b.images {
		n += im.bytes
	}
	return n
}

// fixtures holds what the cases copy; a field is empty when no selected
// case needs it.
type fixtures struct {
	big  imageFixture  // SIZE bytes in 10 layers
	mid  bundleFixture // big plus 3 images of SIZE/16 each
	many bundleFixture // 100 small images sharing a 1 MiB base layer
}

// layerBlob is a pseudo-random layer: a gzip stream (stored, no compression:
// the data is random) of a tar holding one file of fileSize bytes generated
// by ChaCha8 from seed. It is never held in memory: describe and push
// generate it again.
type layerBlob struct {
	seed     [32]byte
	fileSize int64
	desc     ocispec.Descriptor
	diffID   digest.Digest
}

// newLayerBlob derives the layer's seed from name and computes its digest,
// size and diff ID in one pass over the generated stream.
func newLayerBlob(name string, fileSize int64) (*layerBlob, error) {
	l := &layerBlob{seed: sha256.Sum256([]byte("ferry-bench/" + name)), fileSize: fileSize}
	blobHash, tarHash := sha256.New(), sha256.New()
	counter := &countingWriter{w: blobHash}
	if err := l.write(counter, tarHash); err != nil {
		return nil, fmt.Errorf("layer %s: %w", name, err)
	}
	l.desc = ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageLayerGzip,
		Digest:    digest.NewDigestFromBytes(digest.SHA256, blobHash.Sum(nil)),
		Size:      counter.n,
	}
	l.diffID = digest.NewDigestFromBytes(digest.SHA256, tarHash.Sum(nil))
	return l, nil
}

// write generates the layer: the compressed stream goes to w, the tar
// stream (before gzip) also to tarSink when it is not nil.
func (l *layerBlob) write(w io.Writer, tarSink io.Writer) error {
	gz, err := gzip.NewWriterLevel(w, gzip.NoCompression)
	if err != nil {
		return err
	}
	var out io.Writer = gz
	if tarSink != nil {
		out = io.MultiWriter(gz, tarSink)
	}
	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg, Name: "data/random.bin", Mode: 0o644, Size: l.fileSize,
		ModTime: time.Unix(0, 0), Format: tar.FormatPAX,
	}); err != nil {
		return err
	}
	// The header is in hdr now; the body, its padding and the end-of-archive
	// blocks are written by hand so the body streams from the generator.
	if _, err := out.Write(hdr.Bytes()); err != nil {
		return err
	}
	if _, err := io.CopyN(out, rand.NewChaCha8(l.seed), l.fileSize); err != nil {
		return err
	}
	pad := (512 - l.fileSize%512) % 512
	if _, err := out.Write(make([]byte, pad+1024)); err != nil {
		return err
	}
	return gz.Close()
}

// reader returns the layer's bytes as a stream generated on the fly.
func (l *layerBlob) reader() *io.PipeReader {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(l.write(pw, nil)) }()
	return pr
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// pushLayer pushes l to repo unless it is there; with mountFrom set it asks
// the registry to mount the blob from that repository first.
func pushLayer(ctx context.Context, repo *remote.Repository, l *layerBlob, mountFrom string) error {
	if ok, err := repo.Exists(ctx, l.desc); err != nil {
		return fmt.Errorf("push %s to %s: %w", l.desc.Digest, repo.Reference, err)
	} else if ok {
		return nil
	}
	if mountFrom != "" {
		return repo.Mount(ctx, l.desc, mountFrom, func() (io.ReadCloser, error) { return l.reader(), nil })
	}
	r := l.reader()
	err := repo.Push(ctx, l.desc, r)
	r.CloseWithError(io.ErrClosedPipe) // ends the generator if the push stopped early
	if err != nil {
		return fmt.Errorf("push %s to %s: %w", l.desc.Digest, repo.Reference, err)
	}
	return nil
}

// pushBytes pushes content unless repo has it.
func pushBytes(ctx context.Context, repo *remote.Repository, desc ocispec.Descriptor, content []byte) error {
	if ok, err := repo.Exists(ctx, desc); err != nil {
		return fmt.Errorf("push %s to %s: %w", desc.Digest, repo.Reference, err)
	} else if ok {
		return nil
	}
	if err := repo.Push(ctx, desc, bytes.NewReader(content)); err != nil {
		return fmt.Errorf("push %s to %s: %w", desc.Digest, repo.Reference, err)
	}
	return nil
}

// imageLayer is a layer of an image being pushed, with the repository to
// mount it from ("" pushes the bytes).
type imageLayer struct {
	blob      *layerBlob
	mountFrom string
}

// pushImage pushes an OCI image of layers (at most two uploads at a time)
// with a config naming repoName, tags it when tag is not empty, and returns
// it.
func pushImage(ctx context.Context, reg *registryProc, repoName, tag string, layers []imageLayer) (imageFixture, error) {
	repo, err := reg.repository(repoName)
	if err != nil {
		return imageFixture{}, err
	}
	errs := make([]error, len(layers))
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for i, l := range layers {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = pushLayer(ctx, repo, l.blob, l.mountFrom)
		})
	}
	wg.Wait()
	total := int64(0)
	cfg := ocispec.Image{
		Created:  fixtureCreated(),
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config:   ocispec.ImageConfig{Labels: map[string]string{"dev.ferry.bench/image": repoName}},
		RootFS:   ocispec.RootFS{Type: "layers"},
		History:  []ocispec.History{{Created: fixtureCreated(), CreatedBy: "ferry bench fixture"}},
	}
	var descs []ocispec.Descriptor
	for i, l := range layers {
		if errs[i] != nil {
			return imageFixture{}, errs[i]
		}
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.blob.diffID)
		descs = append(descs, l.blob.desc)
		total += l.blob.desc.Size
	}
	cfgRaw, err := json.Marshal(cfg)
	if err != nil {
		return imageFixture{}, err
	}
	cfgDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfgRaw), Size: int64(len(cfgRaw))}
	if err := pushBytes(ctx, repo, cfgDesc, cfgRaw); err != nil {
		return imageFixture{}, err
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cfgDesc,
		Layers:    descs,
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return imageFixture{}, err
	}
	desc := ocispec.Descriptor{MediaType: m.MediaType, Digest: digest.FromBytes(raw), Size: int64(len(raw))}
	if err := pushManifest(ctx, repo, desc, raw, tag); err != nil {
		return imageFixture{}, err
	}
	return imageFixture{repo: repoName, tag: tag, desc: desc, bytes: total + cfgDesc.Size + desc.Size}, nil
}

// pushManifest pushes a manifest by digest, or with tag when it is not empty.
func pushManifest(ctx context.Context, repo *remote.Repository, desc ocispec.Descriptor, raw []byte, tag string) error {
	var err error
	if tag == "" {
		err = repo.Push(ctx, desc, bytes.NewReader(raw))
	} else {
		err = repo.PushReference(ctx, desc, bytes.NewReader(raw), tag)
	}
	if err != nil {
		return fmt.Errorf("push manifest %s to %s: %w", desc.Digest, repo.Reference, err)
	}
	return nil
}

// pushBigImage pushes the big image: size bytes of random files in 10
// layers of about size/10 each.
func pushBigImage(ctx context.Context, reg *registryProc, size int64) (imageFixture, error) {
	const n = 10
	layers := make([]imageLayer, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for i := range n {
		fileSize := size / n
		if i == n-1 {
			fileSize = size - fileSize*(n-1)
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			b, err := newLayerBlob(fmt.Sprintf("big/%d/layer-%d", size, i), fileSize)
			layers[i], errs[i] = imageLayer{blob: b}, err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return imageFixture{}, err
		}
	}
	return pushImage(ctx, reg, bigRepo, fixtureTag, layers)
}

// pushManyBundle pushes count small images (many/app-NNN:v1: a shared base
// layer of baseSize bytes, mounted after the first push, and a unique layer
// of uniqueSize bytes) and a bundle listing them.
func pushManyBundle(ctx context.Context, reg *registryProc, tmp string, count int, baseSize, uniqueSize int64) (bundleFixture, error) {
	base, err := newLayerBlob(fmt.Sprintf("many/base/%d", baseSize), baseSize)
	if err != nil {
		return bundleFixture{}, err
	}
	var out bundleFixture
	firstRepo := ""
	for i := range count {
		name := fmt.Sprintf("many/app-%03d", i)
		unique, err := newLayerBlob(fmt.Sprintf("many/unique/%d/%d", uniqueSize, i), uniqueSize)
		if err != nil {
			return bundleFixture{}, err
		}
		im, err := pushImage(ctx, reg, name, fixtureTag, []imageLayer{{blob: base, mountFrom: firstRepo}, {blob: unique}})
		if err != nil {
			return bundleFixture{}, err
		}
		if firstRepo == "" {
			firstRepo = name
		}
		out.images = append(out.images, im)
	}
	out.bundle, err = pushBundle(ctx, reg, tmp, manyBundleRepo, out.images)
	return out, err
}

// pushMidBundle pushes 3 images of one layer of smallSize bytes each
// (mid/small-N:v1) and a bundle listing big and them.
func pushMidBundle(ctx context.Context, reg *registryProc, tmp string, big imageFixture, smallSize int64) (bundleFixture, error) {
	out := bundleFixture{images: []imageFixture{big}}
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("mid/small-%d", i)
		l, err := newLayerBlob(fmt.Sprintf("mid/%d/%d", smallSize, i), smallSize)
		if err != nil {
			return bundleFixture{}, err
		}
		im, err := pushImage(ctx, reg, name, fixtureTag, []imageLayer{{blob: l}})
		if err != nil {
			return bundleFixture{}, err
		}
		out.images = append(out.images, im)
	}
	var err error
	out.bundle, err = pushBundle(ctx, reg, tmp, midBundleRepo, out.images)
	return out, err
}

// pushBundle builds an imgpkg bundle with ferry's bundle package (the
// layer `imgpkg push -b` makes: .imgpkg/images.yml listing images by digest
// plus a config file) and pushes it to repoName:v1.
func pushBundle(ctx context.Context, reg *registryProc, tmp, repoName string, images []imageFixture) (imageFixture, error) {
	dir, err := os.MkdirTemp(tmp, "bundle-")
	if err != nil {
		return imageFixture{}, err
	}
	defer os.RemoveAll(dir)
	lock := lockfile.ImagesLock{}
	for _, im := range images {
		// The tools' reference (through the delay proxy with LATENCY), so
		// the tools reach the bundle's images the way they reach the bundle.
		lock.Images = append(lock.Images, lockfile.ImageRef{
			Image:       reg.ref(im.repo) + "@" + im.desc.Digest.String(),
			Annotations: map[string]string{"kbld.carvel.dev/id": im.repo},
		})
	}
	yml, err := lock.Marshal()
	if err != nil {
		return imageFixture{}, err
	}
	files := map[string][]byte{
		".imgpkg/images.yml": yml,
		"config/values.yml":  fmt.Appendf(nil, "#@data/values\n---\nbundle: %s\nimages: %d\n", repoName, len(images)),
	}
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return imageFixture{}, err
		}
		if err := os.WriteFile(p, content, 0o644); err != nil {
			return imageFixture{}, err
		}
	}
	img, err := bundle.Build(ctx, []string{dir}, bundle.BuildOptions{Bundle: true, TempDir: tmp})
	if err != nil {
		return imageFixture{}, fmt.Errorf("build bundle %s: %w", repoName, err)
	}
	defer img.Close()
	repo, err := reg.repository(repoName)
	if err != nil {
		return imageFixture{}, err
	}
	layer, err := img.OpenLayer()
	if err != nil {
		return imageFixture{}, err
	}
	err = repo.Push(ctx, img.LayerDesc, layer)
	layer.Close()
	if err != nil {
		return imageFixture{}, fmt.Errorf("push bundle layer to %s: %w", repo.Reference, err)
	}
	if err := pushBytes(ctx, repo, img.ConfigDesc, img.Config); err != nil {
		return imageFixture{}, err
	}
	if err := pushManifest(ctx, repo, img.ManifestDesc, img.Manifest, fixtureTag); err != nil {
		return imageFixture{}, err
	}
	return imageFixture{
		repo: repoName, tag: fixtureTag, desc: img.ManifestDesc,
		bytes: img.ManifestDesc.Size + img.ConfigDesc.Size + img.LayerDesc.Size,
	}, nil
}
