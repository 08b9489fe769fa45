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
	"strconv"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// benchBlob writes a random blob of FERRY_BENCH_BLOB_MIB MiB (default 256)
// and returns its path and descriptor.
func benchBlob(b *testing.B) (string, ocispec.Descriptor) {
	b.Helper()
	mib := 256
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

// BenchmarkWriteTar writes a one-image layout whose layer is the bench blob:
// "file" copies it file to file (copy_file_range) while hashing the tar,
// "file-nodigest" skips the tar's hash, "stream" goes through a buffer.
// MB/s includes the final fsync.
func BenchmarkWriteTar(b *testing.B) {
	ctx := context.Background()
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
	small := streamOpener{cfgDesc.Digest: cfg, man.Digest: mb}
	opener := func(stream bool) BlobOpener {
		return BlobOpenerFunc(func(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
			if d.Digest != layer.Digest {
				return small.OpenBlob(ctx, d)
			}
			f, err := os.Open(blobPath)
			if stream && err == nil {
				return struct {
					io.Reader
					io.Closer
				}{f, f}, nil
			}
			return f, err
		})
	}
	blobs := []ocispec.Descriptor{layer, cfgDesc, man}
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
			b.SetBytes(layer.Size)
			for b.Loop() {
				if _, err := WriteTar(ctx, out, blobs, idx, opener(bc.stream), bc.opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
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
