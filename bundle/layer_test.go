package bundle_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ferry-oci/ferry/bundle"
	"github.com/ferry-oci/ferry/lockfile"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const wantLockImage = "registry.example.com/app@sha256:1111111111111111111111111111111111111111111111111111111111111111"

func TestReadImagesLockFromBuiltLayer(t *testing.T) {
	img := build(t, []string{vectorInput(t, "bundle")}, bundle.BuildOptions{Bundle: true})
	blob := readLayer(t, img)
	for _, mt := range []string{img.LayerDesc.MediaType, ""} {
		lock, err := bundle.ReadImagesLock(context.Background(), bytes.NewReader(blob), mt)
		if err != nil {
			t.Fatalf("media type %q: %v", mt, err)
		}
		if len(lock.Images) != 1 ||
			lock.Images[0].Image != "registry.example.com/team/app@sha256:1111111111111111111111111111111111111111111111111111111111111111" ||
			lock.Images[0].Annotations["kbld.carvel.dev/id"] != "registry.example.com/team/app:v1" {
			t.Errorf("media type %q: lock %+v", mt, lock)
		}
	}
}

func TestReadImagesLockFormats(t *testing.T) {
	plain := makeTar(t, dir("./"), dir("./.imgpkg"), file("./.imgpkg/images.yml", validLock), file("./other.yml", "x"))
	bare := makeTar(t, file(".imgpkg/images.yml", validLock))
	tests := []struct {
		name      string
		blob      []byte
		mediaType string
	}{
		{"gzip oci", gzipBytes(t, plain), ocispec.MediaTypeImageLayerGzip},
		{"gzip docker", gzipBytes(t, bare), bundle.MediaTypeDockerLayer},
		{"gzip sniffed", gzipBytes(t, plain), ""},
		{"zstd oci", zstdBytes(t, plain), ocispec.MediaTypeImageLayerZstd},
		{"zstd sniffed", zstdBytes(t, bare), "application/octet-stream"},
		{"tar oci", plain, ocispec.MediaTypeImageLayer},
		{"tar sniffed", bare, ""},
		{"non-distributable gzip", gzipBytes(t, plain), "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"},
		{"docker foreign", gzipBytes(t, plain), "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"},
		{"windows names", makeTar(t, file(`.imgpkg\images.yml`, validLock)), ""},
		{"last copy wins", makeTar(t, file(".imgpkg/images.yml", "garbage"), file("./.imgpkg/images.yml", validLock)), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lock, err := bundle.ReadImagesLock(context.Background(), bytes.NewReader(tc.blob), tc.mediaType)
			if err != nil {
				t.Fatal(err)
			}
			if len(lock.Images) != 1 || lock.Images[0].Image != wantLockImage {
				t.Errorf("lock %+v", lock)
			}
		})
	}
}

func TestReadImagesLockErrors(t *testing.T) {
	tooBig := strings.Repeat("#", bundle.MaxImagesLockSize+1)
	tests := []struct {
		name      string
		blob      []byte
		mediaType string
		want      error
	}{
		{"missing", gzipBytes(t, makeTar(t, file("config.yml", "x"), file("sub/.imgpkg/images.yml", validLock))), "", bundle.ErrNoImagesLock},
		{"empty layer", gzipBytes(t, makeTar(t)), "", bundle.ErrNoImagesLock},
		{"too large", makeTar(t, file(".imgpkg/images.yml", tooBig)), "", bundle.ErrTooLarge},
		{"symlink", makeTar(t, symlink(".imgpkg/images.yml", "../x")), "", bundle.ErrUnsupportedFile},
		{"invalid lock", makeTar(t, file(".imgpkg/images.yml", "kind: BundleLock\n")), "", lockfile.ErrInvalid},
		{"gzip declared, zstd given", zstdBytes(t, makeTar(t, file(".imgpkg/images.yml", validLock))), ocispec.MediaTypeImageLayerGzip, bundle.ErrInvalidLayer},
		{"zstd declared, gzip given", gzipBytes(t, makeTar(t, file(".imgpkg/images.yml", validLock))), ocispec.MediaTypeImageLayerZstd, bundle.ErrInvalidLayer},
		{"truncated gzip", gzipBytes(t, makeTar(t, file(".imgpkg/images.yml", validLock)))[:40], "", bundle.ErrInvalidLayer},
		{"not a tar", []byte("this is not a tar archive at all, just some text that goes on for a while " + strings.Repeat("x", 600)), "", bundle.ErrInvalidLayer},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := bundle.ReadImagesLock(context.Background(), bytes.NewReader(tc.blob), tc.mediaType)
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestReadImagesLockCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	blob := gzipBytes(t, makeTar(t, file(".imgpkg/images.yml", validLock)))
	if _, err := bundle.ReadImagesLock(ctx, bytes.NewReader(blob), ""); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

// An entry that is not images.yml may be anything, even a device.
func TestReadImagesLockIgnoresOtherEntries(t *testing.T) {
	blob := makeTar(t,
		entry{name: "dev", typ: tar.TypeChar},
		symlink("link", "/etc/passwd"),
		file("../escape", "x"),
		file(".imgpkg/images.yml", validLock))
	if _, err := bundle.ReadImagesLock(context.Background(), bytes.NewReader(blob), ""); err != nil {
		t.Fatal(err)
	}
}
