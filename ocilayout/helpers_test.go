package ocilayout

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const (
	mtDockerConfig  = "application/vnd.docker.container.image.v1+json"
	mtDockerLayer   = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	mtDockerForeign = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

// fixture is a small graph: a bundle, an OCI image, an index of two Docker
// images and an image with a non-distributable layer left out.
type fixture struct {
	data    map[digest.Digest][]byte
	blobs   []ocispec.Descriptor // every blob the layout holds
	roots   []Root
	index   ocispec.Index
	bundle  ocispec.Descriptor
	app     ocispec.Descriptor
	multi   ocispec.Descriptor
	foreign ocispec.Descriptor
	appLay  ocispec.Descriptor // the app's layer
	skipped ocispec.Descriptor // the non-distributable layer (not in blobs)
}

func (fx *fixture) add(mt string, b []byte) ocispec.Descriptor {
	d := ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(b), Size: int64(len(b))}
	if _, ok := fx.data[d.Digest]; !ok {
		fx.data[d.Digest] = b
		fx.blobs = append(fx.blobs, d)
	}
	return d
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (fx *fixture) image(t testing.TB, mt, cfgMT string, cfg []byte, layers ...ocispec.Descriptor) ocispec.Descriptor {
	c := fx.add(cfgMT, cfg)
	m := ocispec.Manifest{MediaType: mt, Config: c, Layers: layers}
	m.SchemaVersion = 2
	return fx.add(mt, mustJSON(t, m))
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	fx := &fixture{data: make(map[digest.Digest][]byte)}
	fx.appLay = fx.add(ocispec.MediaTypeImageLayerGzip, randomBytes(1, 3000))
	fx.app = fx.image(t, ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`), fx.appLay)

	amd := fx.image(t, mediaTypeDockerManifest, mtDockerConfig, []byte(`{"architecture":"amd64","os":"linux","rootfs":{}}`), fx.add(mtDockerLayer, randomBytes(2, 700)))
	arm := fx.image(t, mediaTypeDockerManifest, mtDockerConfig, []byte(`{"architecture":"arm64","os":"linux","rootfs":{}}`), fx.add(mtDockerLayer, randomBytes(3, 513)))
	amd.Platform = &ocispec.Platform{Architecture: "amd64", OS: "linux"}
	arm.Platform = &ocispec.Platform{Architecture: "arm64", OS: "linux"}
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{amd, arm}}
	idx.SchemaVersion = 2
	fx.multi = fx.add(ocispec.MediaTypeImageIndex, mustJSON(t, idx))

	fx.bundle = fx.image(t, mediaTypeDockerManifest, mtDockerConfig, []byte(`{"config":{"Labels":{"dev.carvel.imgpkg.bundle":"true"}}}`), fx.add(mtDockerLayer, randomBytes(4, 512)))

	body := randomBytes(5, 100)
	fx.skipped = ocispec.Descriptor{MediaType: mtDockerForeign, Digest: digest.FromBytes(body), Size: 100, URLs: []string{"https://example.com/layer"}}
	fx.foreign = fx.image(t, mediaTypeDockerManifest, mtDockerConfig, []byte(`{"os":"windows"}`), fx.skipped, fx.add(mtDockerLayer, randomBytes(6, 1)))

	fx.roots = []Root{
		{Desc: fx.bundle, Tag: "v1", OriginalRef: "reg.example/tiny/bundle:v1", Bundle: true, RootBundle: true,
			Requests: []Request{{Position: 0, Ref: "reg.example/tiny/bundle:v1"}}},
		{Desc: fx.app, OriginalRef: "reg.example/tiny/app@" + fx.app.Digest.String()},
		{Desc: fx.multi, OriginalRef: "reg.example/tiny/multi@" + fx.multi.Digest.String()},
		{Desc: fx.foreign, OriginalRef: "reg.example/win@" + fx.foreign.Digest.String(), SkippedLayers: []ocispec.Descriptor{fx.skipped}},
	}
	var err error
	if fx.index, err = NewIndex(fx.roots); err != nil {
		t.Fatal(err)
	}
	return fx
}

// streamOpener serves blobs from memory (not *os.File: the streamed path).
type streamOpener map[digest.Digest][]byte

func (s streamOpener) OpenBlob(_ context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	b, ok := s[d.Digest]
	if !ok {
		return nil, os.ErrNotExist
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// fileOpener serves blobs from files (the copy_file_range path).
type fileOpener string

func newFileOpener(t testing.TB, data map[digest.Digest][]byte) fileOpener {
	t.Helper()
	dir := t.TempDir()
	for d, b := range data {
		if err := os.WriteFile(filepath.Join(dir, d.Encoded()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return fileOpener(dir)
}

func (f fileOpener) OpenBlob(_ context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	return os.Open(filepath.Join(string(f), d.Digest.Encoded()))
}

// writeFixtureTar writes fx as a tar and returns its path.
func writeFixtureTar(t testing.TB, fx *fixture) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "layout.tar")
	if _, err := WriteTar(context.Background(), p, fx.blobs, fx.index, streamOpener(fx.data), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return p
}

// rawEntry is one entry of a hand-made tar.
type rawEntry struct {
	name     string
	typ      byte
	body     []byte
	linkname string
}

// writeRawTar writes entries as a tar file; nothing is checked.
func writeRawTar(t testing.TB, entries []rawEntry) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: e.name, Typeflag: typ, Linkname: e.linkname, Mode: 0o644, Size: int64(len(e.body))}
		if typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return writeBytes(t, buf.Bytes())
}

func writeBytes(t testing.TB, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "in.tar")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// layoutEntries returns the entries of a valid layout for fx, which tests
// then alter.
func layoutEntries(t testing.TB, fx *fixture) []rawEntry {
	t.Helper()
	es := []rawEntry{
		{name: "oci-layout", body: layoutFile},
		{name: "index.json", body: mustJSON(t, fx.index)},
		{name: "blobs/", typ: tar.TypeDir},
		{name: "blobs/sha256/", typ: tar.TypeDir},
	}
	for _, d := range fx.blobs {
		es = append(es, rawEntry{name: blobPath(d.Digest), body: fx.data[d.Digest]})
	}
	return es
}

func readAllFrom(t testing.TB, r io.ReadCloser) ([]byte, error) {
	t.Helper()
	defer r.Close()
	return io.ReadAll(r)
}

// listDir returns the names in dir.
func listDir(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}
