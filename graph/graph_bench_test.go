package graph

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"

	"github.com/ferry-oci/ferry/bundle"
	"github.com/ferry-oci/ferry/lockfile"
)

// Benchmarks of discovery and copy over oras-go's memory store: the CPU
// and allocations of the graph code itself (a registry adds its latency to
// each request, which these leave out). Small, so one iteration is quick:
//
//	go test -run '^$' -bench . -benchtime=1x ./graph/

// benchPush stores data in st; manifests are resolvable by digest and tags.
func benchPush(tb testing.TB, st oras.Target, mediaType string, data []byte, tags ...string) ocispec.Descriptor {
	tb.Helper()
	ctx := context.Background()
	desc := content.NewDescriptorFromBytes(mediaType, data)
	if ok, _ := st.Exists(ctx, desc); !ok {
		if err := st.Push(ctx, desc, bytes.NewReader(data)); err != nil {
			tb.Fatal(err)
		}
	}
	for _, tag := range tags {
		if err := st.Tag(ctx, desc, tag); err != nil {
			tb.Fatal(err)
		}
	}
	return desc
}

// benchImage stores an image of one small layer plus a shared base layer;
// labels go into its config.
func benchImage(tb testing.TB, st oras.Target, layers [][]byte, labels map[string]string, tags ...string) ocispec.Descriptor {
	tb.Helper()
	cfg, err := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux", "config": map[string]any{"Labels": labels}})
	if err != nil {
		tb.Fatal(err)
	}
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: benchPush(tb, st, ocispec.MediaTypeImageConfig, cfg)}
	m.SchemaVersion = 2
	for _, l := range layers {
		m.Layers = append(m.Layers, benchPush(tb, st, ocispec.MediaTypeImageLayerGzip, l))
	}
	mb, err := json.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	desc := benchPush(tb, st, ocispec.MediaTypeImageManifest, mb)
	return benchPush(tb, st, ocispec.MediaTypeImageManifest, mb, append([]string{desc.Digest.String()}, tags...)...)
}

// benchBundle builds, in a testSource, a bundle src.io/bundle:v1 of n
// images, each in its own repository, sharing a base layer (the shape of
// e2e's TestMeasureCopy100).
func benchBundle(tb testing.TB, n int) *testSource {
	tb.Helper()
	src := newTestSource()
	base := bytes.Repeat([]byte("shared base layer\n"), 200)
	lock := &lockfile.ImagesLock{}
	for i := range n {
		repo := fmt.Sprintf("src.io/app-%03d", i)
		layer := make([]byte, 512)
		if _, err := rand.Read(layer); err != nil {
			tb.Fatal(err)
		}
		d := benchImage(tb, src.store(repo), [][]byte{base, layer}, nil)
		lock.Images = append(lock.Images, lockfile.ImageRef{Image: repo + "@" + d.Digest.String()})
	}
	yml, err := lock.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	layer := benchTarGz(tb, ".imgpkg/images.yml", yml)
	benchImage(tb, src.store("src.io/bundle"), [][]byte{layer}, map[string]string{bundle.BundleLabel: "true"}, "v1")
	return src
}

// benchTarGz returns a gzip tar holding one file.
func benchTarGz(tb testing.TB, name string, data []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o600, Size: int64(len(data))}); err != nil {
		tb.Fatal(err)
	}
	if _, err := tw.Write(data); err != nil {
		tb.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// BenchmarkDiscover100 discovers a bundle of 100 images: 101 manifests,
// 101 configs, the bundle layer, a lookup in the bundle's repository first
// for each image.
func BenchmarkDiscover100(b *testing.B) {
	ctx := context.Background()
	src := benchBundle(b, 100)
	roots := []RootSpec{{Ref: "src.io/bundle:v1", Kind: RootBundle}}
	for b.Loop() {
		g, err := Discover(ctx, src, roots, DiscoverOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if len(g.Nodes) != 101 {
			b.Fatalf("%d nodes, want 101", len(g.Nodes))
		}
	}
}

// BenchmarkCopyToRepo100 copies the discovered bundle of 100 images into an
// empty registry-like memory target: every blob pushed once, every node
// tagged (with the manifest bytes in hand), the ImageLocations image, the
// user tag.
func BenchmarkCopyToRepo100(b *testing.B) {
	ctx := context.Background()
	src := benchBundle(b, 100)
	g, err := Discover(ctx, src, []RootSpec{{Ref: "src.io/bundle:v1", Kind: RootBundle}}, DiscoverOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		b.StopTimer()
		dst := newRegistryTarget()
		b.StartTimer()
		if _, err := CopyToRepo(ctx, src, g, dst, CopyOptions{DestRepo: "dst.io/apps"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifiedRead reads 16 MiB as router.Fetch hands it to a copy:
// from a source graph must verify (hashed here), and from a source that
// verifies itself (not hashed again here; the source's own hashing is not
// part of this figure).
func BenchmarkVerifiedRead(b *testing.B) {
	data := make([]byte, 16<<20)
	if _, err := rand.Read(data); err != nil {
		b.Fatal(err)
	}
	desc := content.NewDescriptorFromBytes("application/octet-stream", data)
	buf := make([]byte, 1<<20)
	for _, bc := range []struct {
		name string
		src  any
	}{
		{"graph-verifies", memory.New()},
		{"source-verifies", verifyingTarget{memory.New(), true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				rc := verified(bc.src, desc, io.NopCloser(bytes.NewReader(data)))
				if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{rc}, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
