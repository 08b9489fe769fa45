package ocilayout

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Benchmarks of the layout writers and readers. Sizes are small so that one
// iteration is quick:
//
//	go test -run '^$' -bench . -benchtime=1x ./ocilayout/
//
// FERRY_BENCH_BLOB_MIB sets the size of the layer (default 16 MiB; 1024 for
// the figures of a 1 GiB image); MB/s is the layer's throughput.

// benchBlob writes a random blob of FERRY_BENCH_BLOB_MIB MiB (default 16)
// and returns its path and descriptor.
func benchBlob(b *testing.B) (string, ocispec.Descriptor) {
	b.Helper()
	mib := 16
	if s := os.Getenv("FERRY_BENCH_BLOB_MIB"); s != "" {
		var err error
		if mib, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	p := filepath.Join(b.TempDir(), "blob")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	if _, err := io.CopyN(w, rand.NewChaCha8([32]byte{1}), int64(mib)<<20); err != nil {
		b.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	return p, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.NewDigest(digest.SHA256, h), Size: int64(mib) << 20}
}

// benchImage is a one-image layout whose layer is the bench blob.
type benchImage struct {
	blobPath string
	layer    ocispec.Descriptor
	blobs    []ocispec.Descriptor
	index    ocispec.Index
	small    streamOpener // config and manifest
}

func newBenchImage(b *testing.B) benchImage {
	b.Helper()
	blobPath, layer := benchBlob(b)
	cfg := []byte(`{}`)
	cfgDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfgDesc, Layers: []ocispec.Descriptor{layer}}
	m.SchemaVersion = 2
	mb := mustJSON(b, m)
	man := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb))}
	idx, err := NewIndex([]Root{{Desc: man, Tag: "bench"}})
	if err != nil {
		b.Fatal(err)
	}
	return benchImage{
		blobPath: blobPath, layer: layer, index: idx,
		blobs: []ocispec.Descriptor{layer, cfgDesc, man},
		small: streamOpener{cfgDesc.Digest: cfg, man.Digest: mb},
	}
}

// opener serves the layer from its file (stream hides the file, so that
// the writer copies through a buffer) and the rest from memory.
func (img benchImage) opener(stream bool) BlobOpener {
	return BlobOpenerFunc(func(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
		if d.Digest != img.layer.Digest {
			return img.small.OpenBlob(ctx, d)
		}
		f, err := os.Open(img.blobPath)
		if stream && err == nil {
			return struct {
				io.Reader
				io.Closer
			}{f, f}, nil
		}
		return f, err
	})
}

// BenchmarkWriteTar writes a one-image layout whose layer is the bench blob:
// "file" copies it file to file (copy_file_range) while hashing the tar,
// "file-nodigest" skips the tar's hash, "stream" goes through a buffer;
// "dir" writes a layout directory. MB/s includes the final fsync.
func BenchmarkWriteTar(b *testing.B) {
	ctx := context.Background()
	img := newBenchImage(b)
	for _, bc := range []struct {
		name   string
		stream bool
		opts   WriteOptions
	}{
		{"file", false, WriteOptions{}},
		{"file-nodigest", false, WriteOptions{SkipDigest: true}},
		{"stream", true, WriteOptions{}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			out := filepath.Join(b.TempDir(), "out.tar")
			b.SetBytes(img.layer.Size)
			for b.Loop() {
				if _, err := WriteTar(ctx, out, img.blobs, img.index, img.opener(bc.stream), bc.opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("dir", func(b *testing.B) {
		b.SetBytes(img.layer.Size)
		for b.Loop() {
			b.StopTimer()
			out := filepath.Join(b.TempDir(), "layout")
			b.StartTimer()
			if err := WriteDir(ctx, out, img.blobs, img.index, img.opener(false), WriteOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkTarBuilder writes a layout of 8 layers sharing the bench size
// (FERRY_BENCH_BLOB_MIB in all) file to file: "writetar" with WriteTar (one
// blob after the other in digest order, the hash trailing the copy),
// "concurrent-4" with a TarBuilder fed by 4 goroutines in a shuffled order
// (the hash follows the filled prefix) and Commit. MB/s includes the
// final fsync.
func BenchmarkTarBuilder(b *testing.B) {
	ctx := context.Background()
	blobPath, whole := benchBlob(b)
	// Eight layers: eight sections of the bench blob, each in a file.
	const parts = 8
	dir := b.TempDir()
	paths := map[digest.Digest]string{}
	var layers []ocispec.Descriptor
	src, err := os.ReadFile(blobPath)
	if err != nil {
		b.Fatal(err)
	}
	for i := range parts {
		body := src[int64(i)*whole.Size/parts : int64(i+1)*whole.Size/parts]
		d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(body), Size: int64(len(body))}
		p := filepath.Join(dir, d.Digest.Encoded())
		if err := os.WriteFile(p, body, 0o644); err != nil {
			b.Fatal(err)
		}
		paths[d.Digest] = p
		layers = append(layers, d)
	}
	cfg := []byte(`{}`)
	cfgDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfgDesc, Layers: layers}
	m.SchemaVersion = 2
	mb := mustJSON(b, m)
	man := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb))}
	idx, err := NewIndex([]Root{{Desc: man, Tag: "bench"}})
	if err != nil {
		b.Fatal(err)
	}
	small := streamOpener{cfgDesc.Digest: cfg, man.Digest: mb}
	opener := BlobOpenerFunc(func(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
		if p, ok := paths[d.Digest]; ok {
			return os.Open(p)
		}
		return small.OpenBlob(ctx, d)
	})
	blobs := append([]ocispec.Descriptor{cfgDesc, man}, layers...)
	out := filepath.Join(b.TempDir(), "out.tar")

	b.Run("writetar", func(b *testing.B) {
		b.SetBytes(whole.Size)
		for b.Loop() {
			if _, err := WriteTar(ctx, out, blobs, idx, opener, WriteOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("concurrent-4", func(b *testing.B) {
		b.SetBytes(whole.Size)
		r := rand.New(rand.NewPCG(1, 2))
		for b.Loop() {
			tb, err := CreateTar(ctx, out, blobs, idx, WriteOptions{})
			if err != nil {
				b.Fatal(err)
			}
			order := slices.Clone(blobs)
			r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			work := make(chan ocispec.Descriptor, len(order))
			for _, d := range order {
				work <- d
			}
			close(work)
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					for d := range work {
						if err := tb.WriteBlob(ctx, d, opener); err != nil {
							b.Error(err)
						}
					}
				})
			}
			wg.Wait()
			if _, err := tb.Commit(ctx, opener); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkVerify measures checking a layout (every blob hashed, every
// manifest parsed): Tar.Verify and Dir.Verify of the one-image layout.
func BenchmarkVerify(b *testing.B) {
	ctx := context.Background()
	img := newBenchImage(b)
	tarPath := filepath.Join(b.TempDir(), "img.tar")
	if _, err := WriteTar(ctx, tarPath, img.blobs, img.index, img.opener(false), WriteOptions{SkipDigest: true}); err != nil {
		b.Fatal(err)
	}
	dirPath := filepath.Join(b.TempDir(), "layout")
	if err := WriteDir(ctx, dirPath, img.blobs, img.index, img.opener(false), WriteOptions{}); err != nil {
		b.Fatal(err)
	}
	b.Run("tar", func(b *testing.B) {
		b.SetBytes(img.layer.Size)
		for b.Loop() {
			t, err := OpenTar(ctx, tarPath)
			if err != nil {
				b.Fatal(err)
			}
			problems, err := t.Verify(ctx)
			t.Close()
			if err != nil || len(problems) != 0 {
				b.Fatalf("Verify = %v, %v", problems, err)
			}
		}
	})
	b.Run("dir", func(b *testing.B) {
		b.SetBytes(img.layer.Size)
		for b.Loop() {
			d, err := OpenDir(ctx, dirPath)
			if err != nil {
				b.Fatal(err)
			}
			problems, err := d.Verify(ctx)
			d.Close()
			if err != nil || len(problems) != 0 {
				b.Fatalf("Verify = %v, %v", problems, err)
			}
		}
	})
	// The reader a copy from a tar streams through: verified as it is
	// read (the only hash of an import, see Tar.Verifies).
	b.Run("tar-fetch", func(b *testing.B) {
		t, err := OpenTar(ctx, tarPath)
		if err != nil {
			b.Fatal(err)
		}
		defer t.Close()
		buf := make([]byte, 1<<20)
		b.SetBytes(img.layer.Size)
		for b.Loop() {
			rc, err := t.Fetch(ctx, img.layer)
			if err != nil {
				b.Fatal(err)
			}
			if !t.Verifies(img.layer, rc) {
				b.Fatal("Fetch's reader is not reported verified")
			}
			if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{rc}, buf); err != nil {
				b.Fatal(err)
			}
			rc.Close()
		}
	})
}

// BenchmarkOpenTar opens a layout tar of 2000 small blobs (one header pass).
func BenchmarkOpenTar(b *testing.B) {
	ctx := context.Background()
	data := map[digest.Digest][]byte{}
	var blobs, layers []ocispec.Descriptor
	for i := range 2000 {
		body := []byte(fmt.Sprintf("layer %d %s", i, randomBytes(uint64(i), 1000)))
		d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(body), Size: int64(len(body))}
		data[d.Digest] = body
		blobs, layers = append(blobs, d), append(layers, d)
	}
	cfg := []byte(`{}`)
	cfgDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: 2}
	data[cfgDesc.Digest] = cfg
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfgDesc, Layers: layers}
	m.SchemaVersion = 2
	mb := mustJSON(b, m)
	man := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb))}
	data[man.Digest] = mb
	blobs = append(blobs, cfgDesc, man)
	idx, err := NewIndex([]Root{{Desc: man}})
	if err != nil {
		b.Fatal(err)
	}
	p := filepath.Join(b.TempDir(), "many.tar")
	if _, err := WriteTar(ctx, p, blobs, idx, streamOpener(data), WriteOptions{}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		lt, err := OpenTar(ctx, p)
		if err != nil {
			b.Fatal(err)
		}
		lt.Close()
	}
}
