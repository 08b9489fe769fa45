package ocilayout

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestFetchReadSizes: a blob read from a tar or a directory is the same
// whatever the size of the caller's reads (small ones go through the
// reader's buffer), and wrong bytes fail before io.EOF, with every size.
func TestFetchReadSizes(t *testing.T) {
	ctx := context.Background()
	layer := randomBytes(7, 3<<20+77)
	layerDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(layer), Size: int64(len(layer))}
	cfg := []byte(`{}`)
	cfgDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: 2}
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfgDesc, Layers: []ocispec.Descriptor{layerDesc}}
	m.SchemaVersion = 2
	mb := mustJSON(t, m)
	man := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb))}
	idx, err := NewIndex([]Root{{Desc: man, Tag: "v1"}})
	if err != nil {
		t.Fatal(err)
	}
	blobs := []ocispec.Descriptor{layerDesc, cfgDesc, man}
	layouts := map[bool]map[string]layoutFetcher{} // corrupt -> kind -> layout
	for _, corrupt := range []bool{false, true} {
		data := bytes.Clone(layer)
		if corrupt {
			data[len(data)-10] ^= 0x80 // near the end: found only by the hash
		}
		src := streamOpener{layerDesc.Digest: data, cfgDesc.Digest: cfg, man.Digest: mb}
		tp := filepath.Join(t.TempDir(), "l.tar")
		if _, err := WriteTar(ctx, tp, blobs, idx, src, WriteOptions{SkipDigest: true}); err != nil {
			t.Fatal(err)
		}
		dp := filepath.Join(t.TempDir(), "dir")
		if err := WriteDir(ctx, dp, blobs, idx, src, WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		lt, err := OpenTar(ctx, tp)
		if err != nil {
			t.Fatal(err)
		}
		defer lt.Close()
		ld, err := OpenDir(ctx, dp)
		if err != nil {
			t.Fatal(err)
		}
		defer ld.Close()
		layouts[corrupt] = map[string]layoutFetcher{"tar": lt, "dir": ld}
	}
	for _, kind := range []string{"tar", "dir"} {
		for _, size := range []int{1, 1000, 32 << 10, minDirectRead, 4 << 20} {
			for _, corrupt := range []bool{false, true} {
				name := kind + "/" + strconv.Itoa(size)
				if corrupt {
					name += "/corrupt"
				}
				t.Run(name, func(t *testing.T) {
					if size == 1 && kind == "dir" {
						t.Skip("one byte at a time is covered by the tar")
					}
					l := layouts[corrupt][kind]
					rc, err := l.Fetch(ctx, layerDesc)
					if err != nil {
						t.Fatal(err)
					}
					defer rc.Close()
					if !l.Verifies(layerDesc, rc) {
						t.Error("Fetch's reader is not reported verified")
					}
					if l.Verifies(cfgDesc, rc) || l.Verifies(layerDesc, bytes.NewReader(layer)) {
						t.Error("Verifies vouches for another descriptor or another reader")
					}
					var got bytes.Buffer
					_, err = io.CopyBuffer(&got, struct{ io.Reader }{rc}, make([]byte, size))
					if corrupt {
						if !errors.Is(err, ErrDigestMismatch) {
							t.Fatalf("read = %v, want ErrDigestMismatch", err)
						}
						return
					}
					if err != nil || !bytes.Equal(got.Bytes(), layer) {
						t.Fatalf("read %d bytes, %v; want the layer", got.Len(), err)
					}
				})
			}
		}
	}
}

type layoutFetcher interface {
	Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error)
	Verifies(desc ocispec.Descriptor, rc io.Reader) bool
}
