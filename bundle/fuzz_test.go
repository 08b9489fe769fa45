package bundle_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-oci/ferry/bundle"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

var fuzzMediaTypes = []string{
	"",
	bundle.MediaTypeDockerLayer,
	ocispec.MediaTypeImageLayer,
	ocispec.MediaTypeImageLayerGzip,
	ocispec.MediaTypeImageLayerZstd,
}

// fuzzSeeds are small tars covering the interesting shapes.
func fuzzSeeds(t testing.TB) [][]byte {
	return [][]byte{
		makeTar(t, dir("./"), dir(".imgpkg"), file(".imgpkg/images.yml", validLock), file("a", "b")),
		makeTar(t, file("../x", "y")),
		makeTar(t, symlink("l", ".."), file("l/x", "y")),
		makeTar(t, symlink("a", "b/.."), symlink("b", ".")),
		makeTar(t, dir("d"), file("d/f", "1"), hardlink("h", "d/f"), file("d/.wh.f", ""), file("d/.wh..wh..opq", "")),
		makeTar(t, entry{name: "dev", typ: tar.TypeChar}),
		gzipBytes(t, makeTar(t, file(".imgpkg/images.yml", validLock))),
		zstdBytes(t, makeTar(t, file(".imgpkg/images.yml", validLock))),
	}
}

func FuzzReadImagesLock(f *testing.F) {
	for i, seed := range fuzzSeeds(f) {
		f.Add(seed, uint8(i))
	}
	f.Fuzz(func(t *testing.T, data []byte, mt uint8) {
		if len(data) > 1<<20 {
			return
		}
		lock, err := bundle.ReadImagesLock(context.Background(), bytes.NewReader(data), fuzzMediaTypes[int(mt)%len(fuzzMediaTypes)])
		if err == nil && lock == nil {
			t.Fatal("nil lock without an error")
		}
	})
}

func FuzzUnpack(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<20 {
			return
		}
		base, out := workspace(t)
		before := snapshot(t, base)
		layer := bundle.Layer{Open: func(context.Context) (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(data)), nil
		}}
		err := bundle.Unpack(context.Background(), out, []bundle.Layer{layer})
		after := snapshot(t, base)

		// Nothing outside out changes, and nothing is left next to it.
		outPrefix := "out" + string(filepath.Separator)
		for k, v := range before {
			if k == "out" || strings.HasPrefix(k, outPrefix) {
				continue
			}
			if after[k] != v {
				t.Fatalf("%s changed from %q to %q (err %v)", k, v, after[k], err)
			}
		}
		for k := range after {
			if k == "out" || strings.HasPrefix(k, outPrefix) {
				continue
			}
			if _, ok := before[k]; !ok {
				t.Fatalf("%s appeared outside out (err %v)", k, err)
			}
		}
		if err != nil {
			if diff := diffSnapshots(before, after); diff != "" {
				t.Fatalf("failed Unpack (%v) changed the filesystem:\n%s", err, diff)
			}
			return
		}
		if _, err := os.Stat(filepath.Join(out, "old.txt")); err == nil {
			t.Fatal("old contents survived a successful Unpack")
		}
		symlinksStayInside(t, out)
	})
}
